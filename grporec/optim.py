"""AdamW with linear warmup and cosine decay, and the guarded optimizer step.

`guarded_step` clips the gradient norm and steps only when the loss and the gradient norm are
finite; otherwise it drops the gradients and reports the step as skipped, so one bad batch
never writes NaN into the weights.
"""
from __future__ import annotations

import math

import torch

from grporec.config import TrainConfig


class WarmupCosine:
    """The LR multiplier as a callable object, so that LambdaLR's state_dict saves its horizon and a
    resumed run keeps the schedule it started with (a plain lambda would be rebuilt from the new
    run's settings and make the rate jump)."""

    def __init__(self, warmup_ratio: float, total: int):
        self.total = total
        self.warmup = math.ceil(warmup_ratio * total)

    def __call__(self, step: int) -> float:
        return cosine_with_warmup(step, self.warmup, self.total)


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, total_steps: int):
    """(AdamW, LambdaLR): linear warmup over warmup_ratio of the steps, then cosine to 0, over
    `train.schedule_steps` optimizer steps when set, else `total_steps`."""
    params = [p for p in model.parameters() if p.requires_grad]
    # On CUDA the fused kernel updates every parameter in one launch instead of a few per tensor;
    # on the CPU the default (foreach) implementation stays, so CPU runs keep their exact numbers.
    fused = bool(params) and all(p.device.type == "cuda" for p in params)
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.adam_betas), weight_decay=cfg.weight_decay, fused=fused or None)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, WarmupCosine(cfg.warmup_ratio, cfg.schedule_steps or total_steps))
    return opt, sched


def resumed_schedule(scheduler, cfg: TrainConfig, optimizer_steps: int, key: str = "train") -> str | None:
    """After a checkpoint's scheduler state is loaded: keep its horizon, unless `train.schedule_steps`
    asks for another (then the rate follows the new curve from this step on). Returns a note for
    the log when something needs saying (a new horizon, or steps that would run past the horizon)."""
    schedule = scheduler.lr_lambdas[0]
    if not isinstance(schedule, WarmupCosine):  # a checkpoint from before horizons were saved: today's settings
        return None
    if cfg.schedule_steps and cfg.schedule_steps != schedule.total:
        old = schedule.total
        scheduler.lr_lambdas[0] = schedule = WarmupCosine(cfg.warmup_ratio, cfg.schedule_steps)
        for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
            group["lr"] = base * schedule(scheduler.last_epoch)
        return (f"learning-rate schedule: {key}.schedule_steps={cfg.schedule_steps} replaces the checkpoint's horizon of {old} "
                f"optimizer steps (lr now {scheduler.optimizer.param_groups[0]['lr']:.3g})")
    if optimizer_steps > schedule.total:
        return (f"learning-rate schedule: kept the checkpoint's horizon of {schedule.total} optimizer steps, so the steps "
                f"after it run at lr 0; set {key}.schedule_steps={optimizer_steps} to stretch the cosine over the longer run")
    return None


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
