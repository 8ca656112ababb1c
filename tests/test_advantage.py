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
