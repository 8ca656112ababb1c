"""Activation checkpointing of a policy's decoder layers, KV cache included.

Each decoder layer's forward runs under `torch.utils.checkpoint` (non-reentrant): its activations
are dropped after the forward and recomputed in the backward, so a step keeps one layer's
activations instead of all of them. HF's own switch (`gradient_checkpointing_enable`) turns the KV
cache off, and grporec's training forward needs it: the prompt runs once into a cache that the G
completions then read (`grporec.logprobs`). A layer writes that cache, and a recomputed layer
would write it a second time; here the recomputation instead reads the cache as it stood before
the original call and appends nothing, which is exactly what the original call saw. The forward
is wrapped, not `__call__`, so FSDP2's hooks stay outside the checkpoint and run once. A layer that
ran under prefix-shared attention (`grporec.models.attention`) is recomputed under it too: the backward
runs after that forward's context has closed.
"""
from __future__ import annotations

from functools import wraps

import torch
from torch.utils.checkpoint import checkpoint
from transformers import Cache

from grporec.models.attention import active_context, attention
from grporec.dist import decoder_layers


class _Replay:
    """The cache as the original call saw it: `update` returns what the original update returned
    (the first `before` cached positions, then the recomputed new keys and values) and changes nothing."""

    def __init__(self, cache: Cache, layer_idx: int, before: int):
        self._cache, self._layer_idx, self._before = cache, layer_idx, before

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args, **kwargs):
        if layer_idx != self._layer_idx:
            raise RuntimeError(f"activation checkpointing: layer {self._layer_idx} updated the cache of layer {layer_idx}")
        n = self._before
        if n == 0:
            return keys, values
        layer = self._cache.layers[layer_idx]
        return torch.cat([layer.keys[..., :n, :], keys], dim=-2), torch.cat([layer.values[..., :n, :], values], dim=-2)

    def __getattr__(self, name):
        return getattr(self._cache, name)


def _checkpointed(layer: torch.nn.Module, forward):
    @wraps(forward)
    def run(hidden_states, *args, **kwargs):
        if not (torch.is_grad_enabled() and layer.training):
            return forward(hidden_states, *args, **kwargs)  # decoding, reference, evaluation: nothing to recompute
        name = next((k for k, v in kwargs.items() if isinstance(v, Cache)), None)
        idx = layer.self_attn.layer_idx
        before = kwargs[name].get_seq_length(idx) if name is not None else 0  # cached positions the original call saw
        recomputing = False
        shared = active_context()  # a prefix-shared forward's attention, which the recomputation must see too

        def body(h):
            nonlocal recomputing
            if recomputing:  # the second call: the recomputation, during backward
                replay = {**kwargs, name: _Replay(kwargs[name], idx, before)} if name is not None else kwargs
                with attention(layer.self_attn, shared):
                    return forward(h, *args, **replay)
            recomputing = True
            return forward(h, *args, **kwargs)

        return checkpoint(body, hidden_states, use_reentrant=False)

    return run


def enable_activation_checkpointing(model: torch.nn.Module) -> torch.nn.Module:
    """Checkpoint every decoder layer of `model` (in place; call before or after FSDP2 sharding)."""
    for layer in decoder_layers(model):
        layer.forward = _checkpointed(layer, layer.forward)
    return model
