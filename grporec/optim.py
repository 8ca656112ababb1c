"""AdamW with linear warmup and cosine decay, and the guarded optimizer step.

`guarded_step` clips the gradient norm and steps only when the loss and the gradient norm are
finite; otherwise it drops the gradients and reports the step as skipped, so one bad batch
never writes NaN into the weights.
"""
from __future__ import annotations

import math

import torch

from grporec.config import TrainConfig


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, total_steps: int):
    """(AdamW, LambdaLR): linear warmup over warmup_ratio of the steps, then cosine to 0."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.adam_betas), weight_decay=cfg.weight_decay)
    warmup = math.ceil(cfg.warmup_ratio * total_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_with_warmup(s, warmup, total_steps))
    return opt, sched


def cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    """LR multiplier at optimizer step `step` (0-based): (step+1)/warmup, then a cosine from 1 to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def grad_norm_and_clip(model: torch.nn.Module, max_norm: float) -> float:
    """Total gradient norm before clipping (over all ranks under FSDP)."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm if max_norm > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):  # a DTensor under FSDP2
        norm = norm.full_tensor()
    return float(norm)


def guarded_step(model, optimizer, scheduler, max_norm: float, loss_finite: bool) -> tuple[bool, float]:
    """Clip and step if everything is finite. Returns (stepped, grad_norm).

    `loss_finite` must already agree across ranks; the gradient norm is global under FSDP.
    """
    norm = grad_norm_and_clip(model, max_norm)
    ok = loss_finite and math.isfinite(norm)
    if ok:
        optimizer.step()
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return ok, norm
