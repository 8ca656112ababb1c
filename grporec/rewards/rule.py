"""Rule rewards: exact SID match, MiniOneRec's rank-aware penalty for misses (ndcg_rule), and
partial credit for the leading SID levels a completion shares with the target (prefix)."""
from __future__ import annotations

import math

import torch

from grporec.data.formats import SID_TOKEN_RE
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


def sid_levels(sid: str) -> list[str]:
    """The level tokens of an SID, coarse to fine: `<a_1><b_2><c_3>` -> [`<a_1>`, `<b_2>`, `<c_3>`]
    (`data.formats.split_sid`'s tokens, without its check: a malformed completion earns no credit
    instead of raising)."""
    return SID_TOKEN_RE.findall(sid)


def shared_prefix_levels(a: list[str], b: list[str]) -> int:
    """How many leading levels two SIDs have in common."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def prefix_reward(x: RewardInputs) -> torch.Tensor:
    """Partial credit: (leading SID levels shared with the target) / (the target's levels).

    The SID is a coarse-to-fine code, so a completion in the target's first-level category is less
    wrong than one outside it: for a 3-level target, an exact hit scores 1, the right first two
    levels 2/3, the right first level 1/3, anything else (and an invalid completion) 0.
    From the level codes when the inputs carry them (the loop's), else from the SID strings; the
    two agree, except that a target outside the catalog has no codes and so earns no credit.
    """
    if x.level_codes is not None:
        target = x.target_codes.repeat_interleave(x.group_size, 0)  # [B*G, K]
        real = target >= 0
        shared = ((x.level_codes == target) & real).long().cumprod(1).sum(1)  # leading levels in common
        return shared.float() / real.sum(1).clamp(min=1)
    out = []
    for c, t in zip(x.completions, x.targets_per_row()):
        target = sid_levels(normalise(t))
        out.append(0.0 if c is None or not target else shared_prefix_levels(sid_levels(normalise(c)), target) / len(target))
    return torch.tensor(out)
