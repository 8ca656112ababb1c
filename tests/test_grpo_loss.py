"""The GRPO loss against a naive per-token Python loop, for values and gradients."""
import math

import pytest
import torch

from grporec.loss import LOG_RATIO_CLAMP, grpo_loss, k3_kl


def naive_loss(logps, ref, adv, mask, beta, loss_type, old=None, eps_low=0.2, eps_high=0.2):
    """Per-token loops over plain floats-as-tensors; grad flows through `logps` entries."""
    N, L = logps.shape
    seq_terms, total, count = [], 0.0, 0
    for i in range(N):
        toks = [t for t in range(L) if mask[i, t] > 0]
        if loss_type == "sequence":
            lr = sum(logps[i, t] - (old[i, t] if old is not None else logps[i, t].detach()) for t in toks) / max(len(toks), 1)
            ratio = torch.exp(lr)
            pg = torch.minimum(ratio * adv[i], ratio.clamp(1 - eps_low, 1 + eps_high) * adv[i])
            kl = sum(torch.exp(ref[i, t] - logps[i, t]) - (ref[i, t] - logps[i, t]) - 1 for t in toks) / max(len(toks), 1) if beta else 0.0
            seq_terms.append(-(pg - beta * kl))
            continue
        s = 0.0
        for t in toks:
            o = old[i, t] if old is not None else logps[i, t].detach()
            ratio = torch.exp(logps[i, t] - o)
            pg = torch.minimum(ratio * adv[i], ratio.clamp(1 - eps_low, 1 + eps_high) * adv[i])
            kl = torch.exp(ref[i, t] - logps[i, t]) - (ref[i, t] - logps[i, t]) - 1 if beta else 0.0
            s = s + -(pg - beta * kl)
        seq_terms.append(s / max(len(toks), 1))
        total = total + s
        count += len(toks)
    if loss_type in ("grpo", "sequence"):
        return sum(seq_terms) / N
    if loss_type == "token":
        return total / count
    return total / (N * L)  # dr_grpo


def make(seed=0, N=6, L=4):
    g = torch.Generator().manual_seed(seed)
    logps = (-torch.rand(N, L, generator=g) * 3).requires_grad_()
    ref = -torch.rand(N, L, generator=g) * 3
    adv = torch.randn(N, generator=g)
    mask = torch.ones(N, L)
    mask[1, 3:] = 0  # sequences of different lengths
    mask[4, 2:] = 0
    return logps, ref, adv, mask


@pytest.mark.parametrize("loss_type", ["grpo", "token", "dr_grpo", "sequence"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_value_and_gradient_match_naive(loss_type, beta):
    logps, ref, adv, mask = make()
    loss, _ = grpo_loss(logps, ref if beta else None, adv, mask, beta, loss_type=loss_type)
    (grad,) = torch.autograd.grad(loss, logps)
    logps2 = logps.detach().clone().requires_grad_()
    want = naive_loss(logps2, ref, adv, mask, beta, loss_type)
    (want_grad,) = torch.autograd.grad(want, logps2)
    torch.testing.assert_close(loss, want.float())
    torch.testing.assert_close(grad, want_grad)
    assert (grad[mask == 0] == 0).all()  # padding carries no gradient


def test_hand_computed_single_token():
    # One token, logp = -1, ref = -2, A = 2, beta = 0.5:
    # d = ref - logp = -1; k3 = e^-1 - (-1) - 1 = e^-1 = 0.367879...; ratio = 1;
    # objective = 1 * 2 - 0.5 * 0.367879 = 1.816060; loss = -1.816060
    # d(loss)/d(logp) = -(A * ratio) + beta * d(k3)/d(logp) = -2 + 0.5 * (1 - e^d) = -2 + 0.5 * (1 - e^-1) = -1.683940
    logps = torch.tensor([[-1.0]], requires_grad=True)
    loss, m = grpo_loss(logps, torch.tensor([[-2.0]]), torch.tensor([2.0]), torch.ones(1, 1), beta=0.5)
    torch.testing.assert_close(loss, torch.tensor(-(2 - 0.5 * math.exp(-1))))
    loss.backward()
    torch.testing.assert_close(logps.grad, torch.tensor([[-2 + 0.5 * (1 - math.exp(-1))]]))
    torch.testing.assert_close(m["kl"], torch.tensor(math.exp(-1)))


def test_beta_zero_has_no_kl_and_needs_no_reference():
    logps, ref, adv, mask = make(1)
    a, ma = grpo_loss(logps, None, adv, mask, beta=0.0)
    b, _ = grpo_loss(logps, ref, adv, mask, beta=0.0)
    torch.testing.assert_close(a, b)
    assert ma["kl"].item() == 0.0
    with pytest.raises(ValueError, match="ref_logps is required"):
        grpo_loss(logps, None, adv, mask, beta=0.1)


@pytest.mark.parametrize("loss_type", ["grpo", "token", "dr_grpo", "sequence"])
def test_one_iteration_clipped_equals_plain(loss_type):
    logps, ref, adv, mask = make(2)
    plain, _ = grpo_loss(logps, ref, adv, mask, 0.04, loss_type=loss_type)
    (g1,) = torch.autograd.grad(plain, logps)
    clipped, m = grpo_loss(logps, ref, adv, mask, 0.04, old_logps=logps.detach(), loss_type=loss_type,
                           epsilon_low=0.1, epsilon_high=0.1)
    (g2,) = torch.autograd.grad(clipped, logps)
    torch.testing.assert_close(plain, clipped)
    torch.testing.assert_close(g1, g2)
    assert m["clip_region"].item() == 0.0


def test_clipping_against_old_logps():
    logps, ref, adv, mask = make(3)
    old = logps.detach() - torch.linspace(-0.5, 0.5, logps.numel()).view_as(logps)  # ratios e^-0.5 .. e^0.5
    loss, m = grpo_loss(logps, ref, adv, mask, 0.04, old_logps=old, epsilon_low=0.2, epsilon_high=0.28)
    (g,) = torch.autograd.grad(loss, logps)
    logps2 = logps.detach().clone().requires_grad_()
    want = naive_loss(logps2, ref, adv, mask, 0.04, "grpo", old=old, eps_low=0.2, eps_high=0.28)
    (wg,) = torch.autograd.grad(want, logps2)
    torch.testing.assert_close(loss, want.float())
    torch.testing.assert_close(g, wg)
    ratio = torch.exp(logps.detach() - old)
    a = adv.unsqueeze(1).expand_as(ratio)
    low = ((ratio < 0.8) & (a < 0) & (mask > 0)).sum() / mask.sum()
    high = ((ratio > 1.28) & (a > 0) & (mask > 0)).sum() / mask.sum()
    torch.testing.assert_close(m["clip_low"], low)
    torch.testing.assert_close(m["clip_high"], high)
    assert m["clip_region"].item() > 0


def test_microbatch_gradients_sum_to_full_batch():
    """Splitting sequences into micro-batches, each loss scaled by its share, gives the full gradient."""
    logps, ref, adv, mask = make(4, N=8, L=5)
    for loss_type in ("grpo", "token"):
        full, _ = grpo_loss(logps, ref, adv, mask, 0.04, loss_type=loss_type)
        (gfull,) = torch.autograd.grad(full, logps)
        gsum = torch.zeros_like(logps)
        for part in (slice(0, 3), slice(3, 8)):
            lp = logps.detach()[part].clone().requires_grad_()
            loss, _ = grpo_loss(lp, ref[part], adv[part], mask[part], 0.04, loss_type=loss_type)
            # grpo averages sequences: weight by the share of sequences; token averages tokens: by share of tokens
            share = (part.stop - part.start) / 8 if loss_type == "grpo" else mask[part].sum() / mask.sum()
            (g,) = torch.autograd.grad(loss * share, lp)
            gsum[part] = g
        torch.testing.assert_close(gsum, gfull)


def test_k3_kl_values_guard_and_k3plus_gradient():
    logp = torch.tensor([-1.0, -2.0, -3.0], requires_grad=True)
    ref = torch.tensor([-1.0, -1.0, -100.0])
    kl = k3_kl(logp, ref)
    # d = ref - logp = [0, 1, -97]; k3 = e^d - d - 1 (no clamp below: e^-97 is just 0) = [0, e - 2, 96]
    want = torch.tensor([0.0, math.e - 2, 96.0])
    torch.testing.assert_close(kl, want)
    (g,) = torch.autograd.grad(kl.sum(), logp)
    # dk3/dlogp = 1 - e^d = [0, 1 - e, 1 - e^-97 = 1]
    torch.testing.assert_close(g, torch.tensor([0.0, 1 - math.e, 1.0]))


def test_k3_kl_beyond_the_clamp_is_finite_and_keeps_pulling_towards_the_reference():
    """Above d = ref - logp = 20 (e^200 would overflow fp32), k3 continues as its tangent at 20."""
    C = LOG_RATIO_CLAMP
    logp = torch.tensor([-200.0, -C, -C - 5.0], requires_grad=True)
    ref = torch.zeros(3)
    kl = k3_kl(logp, ref)
    # at d = C: e^C - C - 1; beyond: the same plus (e^C - 1)(d - C), for d = 200 and d = C + 5
    at_c = math.exp(C) - C - 1
    want = torch.tensor([at_c + math.expm1(C) * (200 - C), at_c, at_c + math.expm1(C) * 5.0])
    assert torch.isfinite(kl).all()
    torch.testing.assert_close(kl, want)
    (g,) = torch.autograd.grad(kl.sum(), logp)
    # dk3/dlogp = -(e^C - 1) beyond the clamp (a clamp would give 0, MiniOneRec's k3 -(e^d - 1) -> -inf)
    torch.testing.assert_close(g, torch.full((3,), -math.expm1(C)))
    kp = k3_kl(logp, ref, "k3+")
    (g2,) = torch.autograd.grad(kp.sum(), logp)
    torch.testing.assert_close(g2, logp.detach() - ref)  # k2's gradient logp - ref, unclamped


def test_k3plus_has_k3_value_and_k2_gradient():
    logp = torch.tensor([-1.0, -2.0, -3.0], requires_grad=True)
    ref = torch.tensor([-1.0, -1.0, -100.0])
    kl = k3_kl(logp, ref)
    kp = k3_kl(logp, ref, "k3+")
    torch.testing.assert_close(kp, kl)  # same value
    (g,) = torch.autograd.grad(kp[:2].sum(), logp)
    # k2 = (logp - ref)^2 / 2 -> gradient logp - ref = [0, -1] (pushes logp up towards ref)
    torch.testing.assert_close(g[:2], torch.tensor([0.0, -1.0]))
    with pytest.raises(ValueError, match="kl_estimator"):
        k3_kl(logp, ref, "k4")


def test_unknown_loss_type():
    logps, ref, adv, mask = make()
    with pytest.raises(ValueError, match="loss_type must be"):
        grpo_loss(logps, ref, adv, mask, 0.04, loss_type="ppo")


@pytest.mark.parametrize("loss_type", ["grpo", "token", "dr_grpo"])
def test_per_token_advantages_equal_per_sequence_ones_when_constant_and_differ_otherwise(loss_type):
    logps, ref, adv, mask = make()
    N, L = logps.shape
    a = grpo_loss(logps, ref, adv, mask, 0.04, loss_type=loss_type)[0]
    b = grpo_loss(logps, ref, adv.unsqueeze(1).expand(N, L), mask, 0.04, loss_type=loss_type)[0]
    torch.testing.assert_close(a, b)  # the same advantage on every token is the per-sequence case
    # one completion's first token gets advantage 1, everything else 0: with ratio 1 the policy term
    # is -(1 / its length) / N for grpo (mean of per-sequence means), so the gradient lands on that token only
    per_token = torch.zeros(N, L)
    per_token[0, 0] = 1.0
    lp = logps.detach().clone().requires_grad_()
    loss, _ = grpo_loss(lp, ref, per_token, mask, 0.0, loss_type="grpo")
    (g,) = torch.autograd.grad(loss, lp)
    want = torch.zeros(N, L)
    want[0, 0] = -1.0 / float(mask[0].sum()) / N
    torch.testing.assert_close(g, want)


def test_per_token_advantages_are_refused_for_sequence_loss_and_wrong_shapes():
    logps, ref, adv, mask = make()
    with pytest.raises(ValueError, match="per-token advantages .* loss_type 'sequence'"):
        grpo_loss(logps, ref, adv.unsqueeze(1).expand_as(logps), mask, 0.04, loss_type="sequence")
    with pytest.raises(ValueError, match=r"advantages must be \[N\] or \[N, L\]"):
        grpo_loss(logps, ref, adv[:3], mask, 0.04)
