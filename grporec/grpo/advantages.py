"""Step 3b of the loop: the advantages of a batch's rewards, as `rl.advantage` and
`rl.scale_rewards` choose, with the std of the whole global batch when it scales by that (ranks
exchange three sums; N ranks divide by the same number as one process). The arithmetic is
`grporec.loss.advantage`'s pure functions; this module only gathers what they need."""
from __future__ import annotations

import torch

from grporec import dist
from grporec.config import Config
from grporec.loss import group_advantages, sibling_advantages
from grporec.loss.advantage import pooled_std


def batch_reward_std(reward: torch.Tensor, env: dist.DistEnv) -> float:
    """The std of the whole global batch's rewards (rl.scale_rewards=batch), from the count, sum and
    sum of squares of every rank's part: N ranks divide by the same number as one process."""
    r = reward.double()
    return pooled_std(*dist.all_reduce_sums([r.numel(), float(r.sum()), float((r * r).sum())], env))


def advantages(reward: torch.Tensor, codes: torch.Tensor, group_size: int, completion_len: int, cfg: Config,
               env: dist.DistEnv) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(advantages, metrics): one per completion [rows] (rl.advantage=group), or one per token
    [rows, completion_len] (sibling: each SID level against its prefix siblings, from `codes`)."""
    std = batch_reward_std(reward, env) if cfg.rl.scale_rewards == "batch" else None
    if cfg.rl.advantage == "sibling":
        return sibling_advantages(reward, codes, group_size, completion_len, cfg.rl.scale_rewards, batch_std=std)
    return group_advantages(reward, group_size, cfg.rl.scale_rewards, batch_std=std)
