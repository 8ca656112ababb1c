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
    rewards: torch.Tensor, group_size: int, scale: Literal["group", "batch", "none"] = "group"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Advantages for rewards laid out group by group.

    Args:
        rewards: [B*G] rewards; rows b*G .. b*G+G-1 belong to prompt b.
        group_size: G (at least 2 for a std to exist).
        scale: "group" divides by each group's std; "batch" by the std of the whole batch;
            "none" only subtracts the group mean (Dr. GRPO).
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
        adv = centred / (rewards.float().std() + STD_EPS)
    else:
        adv = centred
    adv = torch.where(constant, torch.zeros_like(adv), adv)  # exactly 0, not rounding noise / 1e-4
    metrics = {
        "frac_reward_zero_std": constant.float().mean().detach(),
        "reward_std": std.mean().detach(),
    }
    return adv.view(-1), metrics
