"""The inputs of a causal LM's forward that every caller builds alike: left padding, positions,
the prompt of each completion row, and the keyword arguments that differ between versions.

Shared from below by the decoder and by training (log-probabilities, SFT), so neither imports the other.
"""
from __future__ import annotations

import functools
import inspect

import torch


def left_pad(prompts: list[list[int]], pad_id: int, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists -> (ids [B, T], mask [B, T]) padded on the left."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("left_pad needs non-empty prompts")
    T = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), T), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, T - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, T - len(p):] = 1
    return ids.to(device), mask.to(device)


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids [B, T] for a left-padded mask: 0 at each row's first real token."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def prompt_rows(num_prompts: int, group_size: int, device) -> torch.Tensor:
    """[B*G]: the prompt of each completion row, group by group (0, 0, ..., 1, 1, ...)."""
    return torch.arange(num_prompts, device=device).repeat_interleave(group_size)


@functools.lru_cache(maxsize=None)
def _forward_params(model_type: type) -> frozenset:
    return frozenset(inspect.signature(model_type.forward).parameters)


def forward_kwargs(model: torch.nn.Module, cache=None, keep_last: int | None = None) -> dict:
    """Keyword arguments for an HF causal LM's forward that differ between models and versions.

    The KV cache goes in as `cache` (transformers >= 5.2x) or `past_key_values` (older releases);
    `logits_to_keep` is passed only where the model accepts it (otherwise all positions come back).
    """
    params = _forward_params(type(getattr(model, "wrapped", model)))  # a view of a model (LoRA's reference) names it
    kwargs = {}
    if cache is not None:
        kwargs["cache" if "cache" in params else "past_key_values"] = cache
    if keep_last is not None and "logits_to_keep" in params:
        kwargs["logits_to_keep"] = keep_last
    return kwargs
