"""Distributed is optional and detected: rank, world size and device from the environment.

Without torchrun this is one process and every helper is a no-op. Under torchrun, even with one
rank, the process group uses gloo on CPU and nccl on CUDA, and `shard` applies FSDP2
(`fully_shard` on each decoder layer, then the root) with bf16 compute and fp32 reduction on
CUDA: `torchrun --nproc_per_node=1` runs the same code path as eight ranks.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.attention import SDPBackend, sdpa_kernel

from grporec.errors import SettingsError


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    launched: bool = False  # started by torchrun (a process group exists, even for one rank)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or self.launched


def setup() -> DistEnv:
    """Read torchrun's environment (if any), pick the device, start the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    launched = "TORCHELASTIC_RUN_ID" in os.environ or world > 1  # torchrun sets TORCHELASTIC_RUN_ID
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
        # fp32 matmuls that remain (outside bf16 autocast/FSDP mixed precision: evaluation in fp32,
        # SFT with mixed_precision off) run on tensor cores in TF32 rather than at fp32 FMA speed
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        device = torch.device("cpu")
    if launched and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank, world, local, device, launched)


def autocast(env: DistEnv, train) -> contextlib.AbstractContextManager:
    """bf16 autocast where `train` (a TrainConfig) asks for it, in one process: on CUDA with
    `mixed_precision` (under torchrun FSDP2's mixed precision casts instead), on the CPU with
    `cpu_mixed_precision`. There attention takes SDPA's math kernel: PyTorch's CPU
    flash-attention backward is ~2.4x slower in bf16 than in fp32, the math one is not."""
    if env.distributed:
        return contextlib.nullcontext()
    if env.device.type == "cuda" and train.mixed_precision:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if env.device.type == "cpu" and train.cpu_mixed_precision:
        stack = contextlib.ExitStack()
        stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
        stack.enter_context(sdpa_kernel([SDPBackend.MATH]))
        return stack
    return contextlib.nullcontext()


def teardown() -> None:
    """End the process group after a run every rank finished. The barrier first: a rank that
    shuts its gloo connections down while another still has a collective in flight to it can
    abort that other rank at exit (SIGABRT, "terminate called without an active exception", seen
    once in CI on a two-rank probe)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()



def shard(model: torch.nn.Module, env: DistEnv, mixed_precision: bool, reshard_after_forward: bool = True) -> torch.nn.Module:
    """Wrap with FSDP2 when distributed: each decoder layer, then the root.

    Order matters: inner modules are sharded first so that each layer's parameters are
    gathered just for its own forward; the root then owns what is left (embeddings, norm, head).
    The reference model is wrapped with reshard_after_forward=True (it never runs backward).
    """
    if not env.distributed:
        return model
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = None
    if mixed_precision and env.device.type == "cuda":
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    kwargs = {"reshard_after_forward": reshard_after_forward}
    if mp is not None:
        kwargs["mp_policy"] = mp
    for layer in decoder_layers(model):
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    return model


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks of an HF causal LM (`model.model.layers` for Qwen/Llama-style models)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise SettingsError(f"{type(model).__name__}: cannot find decoder layers (expected model.model.layers)")
    return list(layers)


def all_reduce_mean(values: dict[str, float], env: DistEnv) -> dict[str, float]:
    """Average scalar metrics over ranks (one collective for the whole dict; tensors on the
    run's device, as nccl requires)."""
    if not env.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=env.device)
    dist.all_reduce(t)
    return {k: v / env.world_size for k, v in zip(keys, t.tolist())}


def all_reduce_sum(x: float, env: DistEnv) -> float:
    if not env.distributed:
        return x
    t = torch.tensor([float(x)], dtype=torch.float64, device=env.device)
    dist.all_reduce(t)
    return t.item()


def all_reduce_sums(values: list[float], env: DistEnv) -> list[float]:
    """Element-wise sums over ranks of a few scalars, in float64 (one collective)."""
    if not env.distributed:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=env.device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_object(obj, env: DistEnv):
    """Rank 0's `obj` on every rank (a decision made once, e.g. which checkpoint to resume)."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=env.device if env.device.type == "cuda" else None)
    return box[0]


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True on every rank when the flag is set on any rank (so all ranks take the same branch)."""
    if not env.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=env.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item() > 0


def gather_objects(obj, env: DistEnv) -> list:
    """Every rank's object, in rank order (on every rank)."""
    if not env.distributed:
        return [obj]
    out = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
