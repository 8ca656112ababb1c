"""Rule rewards: exact SID match, and MiniOneRec's rank-aware penalty for misses (ndcg_rule)."""
from __future__ import annotations

import math

import torch

from grporec.rewards.inputs import RewardInputs

_STRIP = ' \n"'  # completions may carry the newline, quotes or spaces around the SID


def normalise(sid: str | None) -> str | None:
    return None if sid is None else sid.strip(_STRIP)


def rule_reward(x: RewardInputs) -> torch.Tensor:
    """1.0 when a completion equals its prompt's target (after stripping newline, quotes, spaces)."""
    targets = [normalise(t) for t in x.targets_per_row()]
    return torch.tensor([float(c is not None and normalise(c) == t) for c, t in zip(x.completions, targets)])


def ndcg_weights(group_size: int) -> torch.Tensor:
    """w_i = -(1 / log2(i + 2)) / sum_{j<G} 1 / log2(j + 2): negative, summing to -1 ([G])."""
    dcg = torch.tensor([1.0 / math.log2(i + 2) for i in range(group_size)], dtype=torch.float64)
    return (-dcg / dcg.sum()).float()


def ndcg_rule_reward(x: RewardInputs) -> torch.Tensor:
    """Within a group with at least one hit: hits 0, misses w_rank. Groups with no hit: all 0."""
    hit = rule_reward(x).view(-1, x.group_size)  # [B, G]
    w = ndcg_weights(x.group_size)[x.ranks.cpu().view(-1, x.group_size)]  # [B, G]
    group_has_hit = hit.amax(dim=1, keepdim=True) > 0
    return torch.where(group_has_hit & (hit == 0), w, torch.zeros_like(w)).view(-1)
