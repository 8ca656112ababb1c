"""The GRPO loss with a k3 KL penalty, as a pure function of per-token log-probs.

Per token t of completion i: ratio = exp(logp - old_logp) (old_logp = logp.detach() with one
update per rollout, so the ratio is 1 and its gradient is that of logp), objective
ratio * A_i - beta * KL, loss = -objective, aggregated by `loss_type`:
- "grpo" (default, MiniOneRec/TRL): masked mean over each sequence's tokens, then mean over sequences;
- "token" (DAPO): sum over all valid tokens / their number;
- "dr_grpo" (Dr. GRPO): sum / (number of sequences x max completion length);
- "sequence" (GSPO): one length-normalised sequence ratio exp(mean_t(logp - old_logp)) per sequence.
With several updates per rollout (`old_logps` given), the PPO clip applies:
min(ratio * A, clip(ratio, 1 - epsilon_low, 1 + epsilon_high) * A).
KL to the reference is k3 (Schulman): exp(ref - logp) - (ref - logp) - 1, in fp32, or "k3+": the
k3 value with the k2 gradient (logp - ref), which always pulls towards the reference.
"""
from __future__ import annotations

import math
from typing import Literal

import torch

# exp() of a log-ratio d = ref - logp above 20 (a factor of 5e8) only says "very far from the
# reference", and exp(89) overflows fp32. Above it k3 continues as its tangent at 20 (same value
# and slope there), so the estimate stays finite and its gradient keeps pulling towards the
# reference with slope e^20 - 1 (MiniOneRec's unclamped k3 pulls with e^d - 1 until it overflows;
# a plain clamp would pull with 0). Below -20 nothing overflows (e^d -> 0, k3 -> -d - 1): no clamp.
LOG_RATIO_CLAMP = 20.0

LossType = Literal["grpo", "token", "dr_grpo", "sequence"]


def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor, estimator: Literal["k3", "k3+"] = "k3") -> torch.Tensor:
    """Per-token KL(policy || reference) estimate [N, L] in fp32.

    "k3": exp(d) - d - 1 with d = ref - logp (non-negative, unbiased), continued linearly above
        d = LOG_RATIO_CLAMP (see there).
    "k3+": the same value, with the gradient of k2 = (logp - ref)^2 / 2.
    """
    d = ref_logps.float() - logps.float()
    dc = d.clamp(max=LOG_RATIO_CLAMP)
    # The tangent's part is selected by `where` (not d - dc), so that up to the clamp its gradient is
    # an exact 0 instead of +e^20 and -e^20 cancelling in fp32, and the slope at d = 20 is counted once.
    tangent = torch.where(d > LOG_RATIO_CLAMP, math.expm1(LOG_RATIO_CLAMP) * (d - LOG_RATIO_CLAMP), torch.zeros_like(d))
    k3 = torch.exp(dc) - dc - 1 + tangent
    if estimator == "k3":
        return k3
    if estimator == "k3+":
        k2 = 0.5 * d.pow(2)
        return k3.detach() + k2 - k2.detach()
    raise ValueError(f"kl_estimator must be 'k3' or 'k3+', got {estimator!r}")


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def grpo_loss(
    logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    old_logps: torch.Tensor | None = None,
    loss_type: LossType = "grpo",
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    kl_estimator: Literal["k3", "k3+"] = "k3",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO loss and detached metrics.

    Args:
        logps: [N, L] policy log-probs of the completion tokens (with grad); N = B*G.
        ref_logps: [N, L] reference log-probs, or None when beta = 0.
        advantages: [N] one per completion, or [N, L] one per token (for per-token credit
            assignment; not with loss_type "sequence", whose ratio is per sequence).
        mask: [N, L], 1 on completion tokens.
        beta: KL coefficient.
        old_logps: [N, L] log-probs at rollout time, for several updates per rollout; None
            means this is the only update (ratio 1).
        loss_type: "grpo", "token", "dr_grpo" or "sequence".
        epsilon_low, epsilon_high: PPO clip range (used when the ratio can differ from 1).
        kl_estimator: "k3" or "k3+".
    Returns:
        (loss, metrics): scalar loss; metrics `kl`, `policy_term`, `clip_low`, `clip_high`,
        `clip_region` (fractions of valid tokens, or sequences for "sequence").
    """
    if beta != 0 and ref_logps is None:
        raise ValueError("ref_logps is required when beta != 0")
    mask = mask.float()
    logps32 = logps.float()
    old = logps32.detach() if old_logps is None else old_logps.float()
    adv = advantages.float()
    if adv.dim() == 2 and loss_type == "sequence":
        raise ValueError("per-token advantages [N, L] need a per-token loss: loss_type 'sequence' has one ratio "
                         "per sequence; use grpo, token or dr_grpo")
    if adv.shape not in ((logps.shape[0],), tuple(logps.shape)):
        raise ValueError(f"advantages must be [N] or [N, L] = {list(logps.shape)}, got {list(adv.shape)}")
    kl = k3_kl(logps32, ref_logps, kl_estimator) if beta != 0 else torch.zeros_like(logps32)

    if loss_type == "sequence":
        lengths = mask.sum(-1).clamp(min=1)  # [N]
        log_ratio = ((logps32 - old) * mask).sum(-1) / lengths
        ratio = torch.exp(log_ratio)  # [N]
        unit = adv
        region = mask.sum(-1) > 0
    else:
        ratio = torch.exp(logps32 - old)  # [N, L]
        unit = adv if adv.dim() == 2 else adv.unsqueeze(1)  # [N, L] or [N, 1]
        region = mask.bool()
    clipped = ratio.clamp(1 - epsilon_low, 1 + epsilon_high)
    policy = torch.minimum(ratio * unit, clipped * unit)

    if loss_type == "sequence":
        kl_seq = (kl * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        loss = -(policy - beta * kl_seq).mean()
    else:
        per_token = -(policy - beta * kl)  # [N, L]
        if loss_type == "grpo":
            loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
        elif loss_type == "token":
            loss = (per_token * mask).sum() / mask.sum().clamp(min=1)
        elif loss_type == "dr_grpo":
            loss = (per_token * mask).sum() / (mask.shape[0] * mask.shape[1])
        else:
            raise ValueError(f"loss_type must be grpo, token, dr_grpo or sequence, got {loss_type!r}")

    low = (ratio < 1 - epsilon_low) & (unit < 0)  # where the clip binds, by the sign of A
    high = (ratio > 1 + epsilon_high) & (unit > 0)
    r = region.float()
    n = r.sum().clamp(min=1)
    metrics = {
        "kl": _masked_mean(kl.detach(), mask),
        "policy_term": (_masked_mean(policy.detach(), mask) if loss_type != "sequence" else policy.detach().mean()),
        "clip_low": (low.float() * r).sum() / n,
        "clip_high": (high.float() * r).sum() / n,
        "clip_region": ((low | high).float() * r).sum() / n,
    }
    return loss, metrics
