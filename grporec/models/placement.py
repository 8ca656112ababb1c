"""Putting a model where a run trains it: on its device in one process, sharded under torchrun.

Under torchrun only rank 0 reads (or builds) the weights, on its CPU; every other rank makes the
same architecture on the meta device, which holds no memory. All ranks shard (FSDP2), allocate
their own shard and receive it from rank 0's weights. No rank but 0 ever holds the full model,
so an 8-rank job loads a 7B model with one copy in host memory, not eight.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from transformers import AutoModelForCausalLM, PreTrainedModel

from grporec import dist


def place(build: Callable[[], tuple[PreTrainedModel, object]], env: dist.DistEnv, mixed_precision: bool,
          reshard_after_forward: bool = True, prepare: Callable | None = None) -> tuple[PreTrainedModel, object]:
    """(model, tokenizer) from `build()`, on this run's device, sharded when distributed.

    `build` runs on rank 0 only under torchrun (in one process, there); its tokenizer, model
    config and generation config are sent to the other ranks. `prepare(model, tokenizer)` changes
    the model's modules before sharding (LoRA adapters), on every rank alike.
    """
    prepare = prepare or (lambda model, tokenizer: model)
    if not env.distributed:
        model, tokenizer = build()
        return prepare(model, tokenizer).to(env.device), tokenizer
    full, tokenizer = build() if env.is_main else (None, None)
    if env.is_main:
        full = prepare(full, tokenizer)
    config, generation, tokenizer, dtype = dist.broadcast_object(
        (full.config, full.generation_config, tokenizer, full.dtype) if env.is_main else None, env)
    with torch.device("meta"):
        model = prepare(AutoModelForCausalLM.from_config(config, dtype=dtype), tokenizer)
    model.generation_config = generation  # rank 0 saves it; the same on every rank all the same
    dist.shard(model, env, mixed_precision, reshard_after_forward)
    model.to_empty(device=env.device)
    set_model_state_dict(model, full.state_dict() if env.is_main else {},
                         options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    _broadcast_buffers(model, full, env)
    return model, tokenizer


def _broadcast_buffers(model: torch.nn.Module, full: torch.nn.Module | None, env: dist.DistEnv) -> None:
    """Buffers outside the state dict (rotary frequencies) are computed at construction, which the
    meta device skips: rank 0's values, sent to every rank."""
    source = dict(full.named_buffers()) if full is not None else {}
    for name, buf in model.named_buffers():
        if env.is_main:
            buf.copy_(source[name])
        torch.distributed.broadcast(buf, src=0)
