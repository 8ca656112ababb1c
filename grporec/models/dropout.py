"""Residual dropout for SFT: the regulariser of the TIGER-style recipes, on any HF decoder.

A Qwen2 or Llama configuration has no hidden dropout (only attention-probability dropout), so the
from-scratch model and a pretrained one alike would train without any. This adds it where GPT-2
and SASRec have it: on the token embeddings and on what each block's attention and MLP add to the
residual stream, as forward hooks that act only in training mode. `model.eval()` (valid loss,
beam search, saved models) computes exactly what the model without the hooks computes, and
nothing is saved with the model. Activation checkpointing recomputes a layer under the RNG state
of its first forward, so the recomputed masks are the original ones.

SFT only: GRPO compares the policy's log-probabilities with those of the rollout and of the
reference at the same parameters, and random masks would make that ratio noise.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from grporec.dist import decoder_layers
from grporec.errors import SettingsError


def check_dropout(p: float) -> None:
    """`sft.dropout` is a probability below 1 (1 would zero every activation)."""
    if not 0.0 <= p < 1.0:
        raise SettingsError(f"sft.dropout must be in [0, 1), got {p}")


def add_residual_dropout(model: torch.nn.Module, p: float) -> list:
    """Hooks dropping each element with probability `p` (scaled by 1/(1-p), in training mode only)
    from the input embeddings and from every decoder layer's `self_attn` and `mlp` outputs.
    Returns the hook handles (`handle.remove()` undoes them); none when p == 0."""
    check_dropout(p)
    if p == 0.0:
        return []

    def drop(module, args, output):
        if not module.training:
            return output
        if isinstance(output, tuple):  # attention returns (output, weights)
            return (F.dropout(output[0], p, True),) + tuple(output[1:])
        return F.dropout(output, p, True)

    modules = [model.get_input_embeddings()]
    for i, layer in enumerate(decoder_layers(model)):
        for name in ("self_attn", "mlp"):
            sub = getattr(layer, name, None)
            if sub is None:
                raise SettingsError(f"sft.dropout: decoder layer {i} of {type(model).__name__} has no {name!r} module")
            modules.append(sub)
    return [m.register_forward_hook(drop) for m in modules]
