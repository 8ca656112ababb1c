"""Rewards for generated recommendations, composed from named pure functions.

Each reward maps `RewardInputs` (completions [B*G] as SID strings, targets [B], group size,
ranks, histories) to a tensor [B*G]. `REWARD_TYPES` maps MiniOneRec's `reward_type` names to
weighted lists; `RewardSet` evaluates the list, returns the weighted sum and reports each
function's mean as `rewards/<name>`. Invalid completions get a defined value (0, or the
ranking penalty), never an exception.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from grporec.rewards.inputs import RewardInputs
from grporec.rewards.rule import ndcg_rule_reward, ndcg_weights, prefix_reward, rule_reward
from grporec.rewards.semantic import SidEmbeddings, semantic_reward

REWARD_TYPES: dict[str, list[tuple[str, float]]] = {
    "rule": [("rule", 1.0)],
    "ranking": [("rule", 1.0), ("ndcg_rule", 1.0)],
    "ranking_only": [("ndcg_rule", 1.0)],
    "semantic": [("semantic", 1.0)],
    "sasrec": [("sasrec", 1.0)],
    "prefix": [("prefix", 1.0)],
    "ranking_prefix": [("rule", 1.0), ("ndcg_rule", 1.0), ("prefix", 1.0)],
}
REWARD_NAMES = ("rule", "ndcg_rule", "prefix", "semantic", "sasrec")
RewardFn = Callable[[RewardInputs], torch.Tensor]


def resolve_rewards(reward_type: str, names: list[str] | None = None, weights: list[float] | None = None) -> list[tuple[str, float]]:
    """The (name, weight) list: explicit names (and weights) win over `reward_type`."""
    if names is None:
        if weights is not None:
            raise ValueError("reward.weights needs reward.names")
        if reward_type not in REWARD_TYPES:
            raise ValueError(f"reward.reward_type: unknown {reward_type!r}; choose from {sorted(REWARD_TYPES)}")
        return REWARD_TYPES[reward_type]
    unknown = [n for n in names if n not in REWARD_NAMES]
    if unknown or not names:
        raise ValueError(f"reward.names: unknown reward {unknown[0]!r}; choose from {list(REWARD_NAMES)}" if unknown else "reward.names is empty")
    weights = [1.0] * len(names) if weights is None else weights
    if len(weights) != len(names):
        raise ValueError(f"reward.weights has {len(weights)} values for {len(names)} names")
    return list(zip(names, weights))


class RewardSet:
    """Named reward functions with weights; calling it gives (total [B*G], metrics)."""

    def __init__(self, named: list[tuple[str, float]], embeddings: SidEmbeddings | None = None, sasrec=None):
        self.named = named
        self.fns: dict[str, RewardFn] = {}
        for name, _ in named:
            if name == "rule":
                self.fns[name] = rule_reward
            elif name == "ndcg_rule":
                self.fns[name] = ndcg_rule_reward
            elif name == "prefix":
                self.fns[name] = prefix_reward
            elif name == "semantic":
                if embeddings is None:
                    raise ValueError("the semantic reward needs reward.semantic_embeddings (a .npy matrix)")
                self.fns[name] = lambda x, e=embeddings: semantic_reward(x, e)
            elif name == "sasrec":
                if sasrec is None:
                    raise ValueError("the sasrec reward needs reward.sasrec_path (a trained SASRec)")
                from grporec.rewards.cf import sasrec_reward

                self.fns[name] = lambda x, s=sasrec: sasrec_reward(x, s)
            else:
                raise ValueError(f"unknown reward {name!r}; choose from {list(REWARD_NAMES)}")

    def __call__(self, x: RewardInputs) -> tuple[torch.Tensor, dict[str, float]]:
        total = torch.zeros(len(x.completions))
        metrics = {}
        for name, weight in self.named:
            r = self.fns[name](x).float()
            metrics[f"rewards/{name}"] = r.mean().item()
            total += weight * r
        return total, metrics


__all__ = ["RewardInputs", "RewardSet", "REWARD_TYPES", "resolve_rewards", "rule_reward", "ndcg_rule_reward",
           "ndcg_weights", "prefix_reward", "semantic_reward", "SidEmbeddings"]
