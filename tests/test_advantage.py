"""Group advantages against hand-computed values."""
import pytest
import torch

from grporec.loss import STD_EPS, group_advantages


def test_group_of_four_by_hand():
    # r = [1, 0, 0, 0]: mean 0.25; unbiased var = (0.75^2 + 3 * 0.25^2) / 3 = (0.5625 + 0.1875) / 3 = 0.25;
    # std = 0.5; A = (r - 0.25) / (0.5 + 1e-4) = [0.75, -0.25, -0.25, -0.25] / 0.5001
    adv, m = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4)
    torch.testing.assert_close(adv, torch.tensor([0.75, -0.25, -0.25, -0.25]) / 0.5001)
    torch.testing.assert_close(m["reward_std"], torch.tensor(0.5))
    assert m["frac_reward_zero_std"].item() == 0.0


def test_g_equals_two():
    # r = [3, 1]: mean 2, unbiased std = sqrt(((1)^2 + (-1)^2) / 1) = sqrt(2); A = [1, -1] / (sqrt(2) + 1e-4)
    adv, _ = group_advantages(torch.tensor([3.0, 1.0]), 2)
    torch.testing.assert_close(adv, torch.tensor([1.0, -1.0]) / (2 ** 0.5 + STD_EPS))


def test_zero_std_group_gets_exactly_zero():
    # second group is constant 0.1: rounding in its mean must not leak through the 1e-4 divisor
    adv, m = group_advantages(torch.tensor([1.0, 0.0, 0.1, 0.1]), 2)
    assert adv[2:].tolist() == [0.0, 0.0]
    torch.testing.assert_close(adv[:2], torch.tensor([0.5, -0.5]) / (0.5 ** 0.5 + STD_EPS))
    assert m["frac_reward_zero_std"].item() == 0.5
    adv3, m3 = group_advantages(torch.full((6,), 0.1), 3)
    assert (adv3 == 0).all() and m3["frac_reward_zero_std"].item() == 1.0


def test_batch_and_none_scales():
    r = torch.tensor([1.0, 0.0, 2.0, 2.0])
    # group means 0.5 and 2; centred [0.5, -0.5, 0, 0]
    none, _ = group_advantages(r, 2, scale="none")
    torch.testing.assert_close(none, torch.tensor([0.5, -0.5, 0.0, 0.0]))
    # batch std (unbiased) of [1, 0, 2, 2]: mean 1.25, sum sq dev = 0.0625 + 1.5625 + 0.5625 * 2 = 2.75, var 2.75/3
    batch, _ = group_advantages(r, 2, scale="batch")
    torch.testing.assert_close(batch, torch.tensor([0.5, -0.5, 0.0, 0.0]) / ((2.75 / 3) ** 0.5 + STD_EPS))


def test_matches_naive_loop():
    g = torch.Generator().manual_seed(0)
    r = torch.randint(0, 3, (40,), generator=g).float()
    adv, _ = group_advantages(r, 8)
    for b in range(5):
        grp = r[b * 8:(b + 1) * 8].tolist()
        mean = sum(grp) / 8
        std = (sum((x - mean) ** 2 for x in grp) / 7) ** 0.5
        want = [0.0 if std == 0 else (x - mean) / (std + 1e-4) for x in grp]
        torch.testing.assert_close(adv[b * 8:(b + 1) * 8], torch.tensor(want))


def test_errors():
    with pytest.raises(ValueError, match="group_size must be at least 2"):
        group_advantages(torch.zeros(4), 1)
    with pytest.raises(ValueError, match=r"rewards must be \[B\*G\] with G=3"):
        group_advantages(torch.zeros(4), 3)
    with pytest.raises(ValueError, match="scale must be"):
        group_advantages(torch.zeros(4), 2, scale="global")


def naive_sibling(rewards, codes, G, L, scale):
    """Loop version: token j < K compares with members sharing the first j codes; j >= K with all K."""
    import statistics

    out = torch.zeros(len(rewards), L)
    K = len(codes[0])
    for b in range(len(rewards) // G):
        rows = range(b * G, (b + 1) * G)
        rs = [float(rewards[i]) for i in rows]
        std = statistics.stdev(rs)
        if max(rs) == min(rs):
            continue
        for i in rows:
            for t in range(L):
                j = min(t, K)
                sib = [float(rewards[m]) for m in rows if list(codes[m][:j]) == list(codes[i][:j])]
                a = float(rewards[i]) - sum(sib) / len(sib)
                out[i, t] = a / (std + 1e-4) if scale == "group" else a
    return out


def test_sibling_advantages_by_hand():
    from grporec.loss import sibling_advantages

    # one group of 4, 2 levels, L = 3 (2 SID tokens + EOS):
    # codes (a, x) r=1; (a, y) r=0; (b, x) r=0; (b, z) r=0
    r = torch.tensor([1.0, 0.0, 0.0, 0.0])
    codes = torch.tensor([[1, 7], [1, 8], [2, 7], [2, 9]])
    adv, m = sibling_advantages(r, codes, 4, 3, scale="none")
    # level 0 (everyone): r - 0.25 -> [0.75, -0.25, -0.25, -0.25]
    # level 1 (same first code): row 0 vs {0, 1}: 1 - 0.5 = 0.5; row 1: 0 - 0.5 = -0.5; rows 2, 3 vs {2, 3}: 0
    # after the SID (same whole SID = only itself): 0
    want = torch.tensor([[0.75, 0.5, 0.0], [-0.25, -0.5, 0.0], [-0.25, 0.0, 0.0], [-0.25, 0.0, 0.0]])
    torch.testing.assert_close(adv, want)
    assert float(m["frac_reward_zero_std"]) == 0.0
    # scale="group": divided by the group std (unbiased: sqrt(0.75 / 3) = 0.5) + 1e-4
    torch.testing.assert_close(sibling_advantages(r, codes, 4, 3)[0], want / (0.5 + 1e-4))


@pytest.mark.parametrize("scale", ["group", "none"])
def test_sibling_advantages_match_a_naive_loop_and_reduce_to_grpo_at_level_zero(scale):
    from grporec.loss import group_advantages, sibling_advantages

    g = torch.Generator().manual_seed(3)
    G, B, K, L = 6, 3, 3, 5
    r = torch.randint(0, 3, (B * G,), generator=g).float()
    r[:G] = 1.0  # a constant group: all zero
    codes = torch.randint(0, 2, (B * G, K), generator=g)
    adv, _ = sibling_advantages(r, codes, G, L, scale)
    torch.testing.assert_close(adv, naive_sibling(r, codes.tolist(), G, L, scale))
    torch.testing.assert_close(adv[:, 0], group_advantages(r, G, scale)[0])  # the first token: plain GRPO
    with pytest.raises(ValueError, match="codes must be"):
        sibling_advantages(r, codes, G, 2, scale)
