"""Rewards for generated recommendations, composed from named pure functions.

Each reward maps `RewardInputs` (completions [B*G] as SID strings and level codes, targets [B],
group size, ranks, histories) to a tensor [B*G]. `REWARDS` is the one registry of them by name
(plus `semantic`, `sasrec`, `markov` and `teacher`, bound to their loaded resource); `reward.names` may also name a
function outside grporec as `package.module:function`. `REWARD_TYPES` maps MiniOneRec's
`reward_type` names to weighted lists; `RewardSet` evaluates the list, returns the weighted sum
and reports each function's mean as `rewards/<name>`. Invalid completions get a defined value
(0, or the ranking penalty), never an exception.
"""
from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

import torch

from grporec.errors import SettingsError
from grporec.rewards.inputs import RewardInputs
from grporec.rewards.rule import ndcg_rule_reward, ndcg_weights, prefix_reward, rule_reward
from grporec.rewards.semantic import SidEmbeddings, semantic_reward

RewardFn = Callable[[RewardInputs], torch.Tensor]

# The registry: name -> a pure function RewardInputs -> [B*G]. `reward.names` picks from it; a fork
# adds to it with `register_reward`, and a reward in the user's own module is named as
# `package.module:function` (imported when the run starts, so a typo fails before any training).
REWARDS: dict[str, RewardFn] = {"rule": rule_reward, "ndcg_rule": ndcg_rule_reward, "prefix": prefix_reward}
# Rewards that need a loaded resource, and what each needs. `grporec.grpo.setup.build_rewards` loads the
# resource and hands `RewardSet` each of them as a plain function of RewardInputs, like any other.
BOUND_REWARDS: dict[str, str] = {
    "semantic": "reward.semantic_embeddings (a .npy matrix)",
    "sasrec": "reward.sasrec_path (a trained SASRec)",
    "markov": "the training split (data.train_file)",
    "teacher": "reward.sasrec_path (a trained SASRec) and the training split",
}
# MiniOneRec's `reward_type` names (and grporec's prefix ones) as weighted lists of registry names.
REWARD_TYPES: dict[str, list[tuple[str, float]]] = {
    "rule": [("rule", 1.0)],
    "ranking": [("rule", 1.0), ("ndcg_rule", 1.0)],
    "ranking_only": [("ndcg_rule", 1.0)],
    "semantic": [("semantic", 1.0)],
    "sasrec": [("sasrec", 1.0)],
    "prefix": [("prefix", 1.0)],
    "ranking_prefix": [("rule", 1.0), ("ndcg_rule", 1.0), ("prefix", 1.0)],
}


def register_reward(name: str, fn: RewardFn) -> None:
    """Add a reward to the registry under `name` (a fork's own rewards; not for replacing one)."""
    if name in REWARDS or name in BOUND_REWARDS:
        raise SettingsError(f"a reward named {name!r} is already registered")
    if ":" in name or not callable(fn):
        raise SettingsError(f"register_reward({name!r}, ...): the name may not contain ':' and fn must be callable")
    REWARDS[name] = fn


def reward_names() -> list[str]:
    return list(REWARDS) + list(BOUND_REWARDS)


def import_reward(spec: str) -> RewardFn:
    """The function named by `package.module:function`; the module must be importable: installed,
    on PYTHONPATH, or in the working directory."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SettingsError(f"reward.names: {spec!r} must look like package.module:function")
    if os.getcwd() not in sys.path and "" not in sys.path:  # as `python -m` does, also for the `grporec` script
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise SettingsError(f"reward.names: cannot import {module_name!r} for the reward {spec!r} ({e}); is its directory "
                         f"on PYTHONPATH (or the working directory)?") from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise SettingsError(f"reward.names: {module.__file__} has no {attr!r} (reward {spec!r})")
    if not callable(fn):
        raise SettingsError(f"reward.names: {spec!r} is a {type(fn).__name__}, not a function of RewardInputs")
    return fn


def lookup_reward(name: str) -> RewardFn:
    """The registry's function for `name`, or the user's function for `package.module:function`
    (the rewards bound to a resource, `BOUND_REWARDS`, are built by `grpo.setup.build_rewards`)."""
    if ":" in name:
        return import_reward(name)
    if name in REWARDS:
        return REWARDS[name]
    raise SettingsError(f"reward.names: unknown reward {name!r}; choose from {reward_names()}, or name your own "
                     "function as package.module:function")


def resolve_rewards(reward_type: str, names: list[str] | None = None, weights: list[float] | None = None) -> list[tuple[str, float]]:
    """The (name, weight) list: explicit names (and weights) win over `reward_type`. Every name is
    checked here (a `module:function` one is imported), so a bad one fails before any work."""
    if names is None:
        if weights is not None:
            raise SettingsError("reward.weights needs reward.names")
        if reward_type not in REWARD_TYPES:
            raise SettingsError(f"reward.reward_type: unknown {reward_type!r}; choose from {sorted(REWARD_TYPES)}, "
                             "or list reward functions in reward.names")
        return REWARD_TYPES[reward_type]
    if not names:
        raise SettingsError("reward.names is empty")
    for n in names:
        if n not in BOUND_REWARDS:
            lookup_reward(n)
    weights = [1.0] * len(names) if weights is None else weights
    if len(weights) != len(names):
        raise SettingsError(f"reward.weights has {len(weights)} values for {len(names)} names")
    return list(zip(names, weights))


class RewardSet:
    """Named reward functions with weights; calling it gives (total [B*G], metrics)."""

    def __init__(self, named: list[tuple[str, float]], bound: dict[str, RewardFn] | None = None):
        """`bound`: the rewards of `BOUND_REWARDS` the run uses, each already bound to its resource."""
        self.named = named
        self.fns: dict[str, RewardFn] = {}
        bound = bound or {}
        for name, _ in named:
            if name in BOUND_REWARDS:
                if name not in bound:
                    raise SettingsError(f"the {name} reward needs {BOUND_REWARDS[name]}")
                self.fns[name] = bound[name]
            else:
                self.fns[name] = lookup_reward(name)

    def __call__(self, x: RewardInputs) -> tuple[torch.Tensor, dict[str, float]]:
        total = torch.zeros(len(x.completions))
        metrics = {}
        for name, weight in self.named:
            r = self.fns[name](x)
            if not isinstance(r, torch.Tensor) or r.shape != (len(x.completions),):
                got = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
                raise SettingsError(f"reward {name!r} returned {got}; a reward returns a tensor [B*G] = ({len(x.completions)},)")
            r = r.float().cpu()
            if not bool(torch.isfinite(r).all()):
                raise SettingsError(f"reward {name!r} returned a non-finite value (row {int((~torch.isfinite(r)).nonzero()[0])})")
            metrics[f"rewards/{name}"] = r.mean().item()
            total += weight * r
        return total, metrics


__all__ = ["RewardInputs", "RewardSet", "REWARDS", "REWARD_TYPES", "register_reward", "resolve_rewards", "rule_reward", "ndcg_rule_reward",
           "ndcg_weights", "prefix_reward", "semantic_reward", "SidEmbeddings"]
