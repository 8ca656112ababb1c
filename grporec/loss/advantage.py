"""Group-relative advantages: normalise each completion's reward within its prompt's group.

GRPO (DeepSeekMath) replaces a learned value baseline with the group: for the G completions of
one prompt, A = (r - mean) / (std + 1e-4), with the unbiased std (torch's default), as
MiniOneRec and TRL compute it. A group whose rewards are all equal carries no signal and gets
A = 0 exactly; the fraction of such groups is reported because it says how much of a batch
was wasted.
"""
from __future__ import annotations

from typing import Literal

import torch

STD_EPS = 1e-4  # added to the std, as MiniOneRec/TRL do, so a near-constant group cannot explode


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale: Literal["group", "batch", "none"] = "group",
    batch_std: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Advantages for rewards laid out group by group.

    Args:
        rewards: [B*G] rewards; rows b*G .. b*G+G-1 belong to prompt b.
        group_size: G (at least 2 for a std to exist).
        scale: "group" divides by each group's std; "batch" by the std of the whole batch;
            "none" only subtracts the group mean (Dr. GRPO).
        batch_std: for "batch", the std of the whole global batch when `rewards` is one rank's
            part of it (`grporec.grpo.advantages.batch_reward_std` all-reduces it); None: `rewards`' own.
    Returns:
        (advantages [B*G] fp32, metrics) where metrics holds `frac_reward_zero_std` (fraction of
        groups whose rewards are all equal) and `reward_std` (mean within-group std), detached.
    """
    if group_size < 2:
        raise ValueError(f"group_size must be at least 2, got {group_size}")
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be [B*G] with G={group_size}, got shape {tuple(rewards.shape)}")
    if scale not in ("group", "batch", "none"):
        raise ValueError(f"scale must be 'group', 'batch' or 'none', got {scale!r}")
    r = rewards.float().view(-1, group_size)  # [B, G]
    mean = r.mean(dim=1, keepdim=True)
    std = r.std(dim=1, keepdim=True)  # unbiased
    constant = (r.amax(dim=1, keepdim=True) == r.amin(dim=1, keepdim=True))  # [B, 1]
    centred = r - mean
    if scale == "group":
        adv = centred / (std + STD_EPS)
    elif scale == "batch":
        adv = centred / (_batch_std(rewards, batch_std) + STD_EPS)
    else:
        adv = centred
    adv = torch.where(constant, torch.zeros_like(adv), adv)  # exactly 0, not rounding noise / 1e-4
    metrics = {
        "frac_reward_zero_std": constant.float().mean().detach(),
        "reward_std": std.mean().detach(),
    }
    return adv.view(-1), metrics


def sibling_advantages(
    rewards: torch.Tensor, codes: torch.Tensor, group_size: int, length: int,
    scale: Literal["group", "batch", "none"] = "group", batch_std: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Prefix-tree ("sibling") advantages, one per token (as in Sibling-GRPO / V-STAR).

    The token that chooses SID level j of a completion is credited with the completion's reward
    minus the mean reward of the group members that share its first j levels (its siblings in
    the prefix tree: the ones that made the same earlier choices). Level 0 is the plain group
    baseline; tokens after the last level (newline, EOS) compare with the members that chose the
    same whole SID. With `scale="group"` every token's advantage is divided by its group's reward
    std (+ STD_EPS), as in GRPO, so that the two are on one scale; "batch" divides by the batch's
    std; "none" does not divide. A group whose rewards are all equal gets 0 everywhere.

    Args:
        rewards: [B*G] rewards, group by group.
        codes: [B*G, K] each completion's SID level codes (its first K token ids, one token per level).
        group_size: G.
        length: L, the completion length in tokens (K <= L).
        scale, batch_std: as for `group_advantages`.
    Returns:
        (advantages [B*G, L] fp32, metrics as `group_advantages`).
    """
    _, metrics = group_advantages(rewards, group_size, scale, batch_std)  # checks the arguments; same metrics
    G = group_size
    K = codes.shape[1]
    if codes.dim() != 2 or codes.shape[0] != rewards.numel() or K > length:
        raise ValueError(f"codes must be [B*G, K] with K <= L={length}, got {tuple(codes.shape)}")
    r = rewards.float().view(-1, G)  # [B, G]
    c = codes.view(-1, G, K)  # [B, G, K]
    same = c.unsqueeze(2) == c.unsqueeze(1)  # [B, G, G, K]: member m has i's code at level k
    per_level = []
    for j in range(K + 1):  # j levels shared: j = 0 .. K
        shares = same[..., :j].all(-1) if j else torch.ones_like(same[..., 0])  # [B, G, G]
        baseline = (shares.float() * r.unsqueeze(1)).sum(-1) / shares.float().sum(-1)  # [B, G]
        per_level.append(r - baseline)
    centred = torch.stack(per_level[:K] + [per_level[K]] * (length - K), dim=-1)  # [B, G, L]
    if scale == "group":
        centred = centred / (r.std(dim=1, keepdim=True).unsqueeze(-1) + STD_EPS)
    elif scale == "batch":
        centred = centred / (_batch_std(rewards, batch_std) + STD_EPS)
    constant = (r.amax(dim=1) == r.amin(dim=1)).view(-1, 1, 1)
    adv = torch.where(constant, torch.zeros_like(centred), centred)
    return adv.view(-1, length), metrics


def _batch_std(rewards: torch.Tensor, batch_std: float | None) -> torch.Tensor | float:
    return rewards.float().std() if batch_std is None else batch_std


def pooled_std(count: float, total: float, total_sq: float) -> float:
    """The unbiased std of numbers known only by their count, sum and sum of squares (float64 sums
    over ranks): sqrt((sum x^2 - (sum x)^2 / n) / (n - 1)); 0 for fewer than 2."""
    if count < 2:
        return 0.0
    return max(0.0, (total_sq - total * total / count) / (count - 1)) ** 0.5
