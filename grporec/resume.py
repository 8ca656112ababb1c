"""Where a training run starts, decided once for every rank: afresh, or from a checkpoint.

Shared by the GRPO loop and SFT. Rank 0 alone reads the output directory and decides; the
decision (a checkpoint path or none) is broadcast, so ranks on a lagging or non-shared
filesystem can never resume different steps.

A run that starts afresh in a directory that already holds another run's checkpoints does not
mix with them: they are moved, with that run's `best/` model and `metrics.jsonl`, to
`<output_dir>/superseded-<UTC time>/`, where the user finds them intact (the log says so).
Resuming an earlier checkpoint of the same directory (`train.resume=<path>`) likewise moves the
checkpoints after it aside, so that `train.resume=auto` later continues this run, not the old
branch. Each run carries a run id in its checkpoints, and pruning only ever removes the run's own.
"""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from grporec import dist
from grporec.checkpoint import STEP_DIR, checkpoint_root, latest_checkpoint, step_of
from grporec.config import Config, load_config
from grporec.disk import SUPERSEDED
from grporec.errors import SettingsError

# What a resumed run must share with its checkpoint: they fix the data order, the group layout, the prompts' ids
# and which parameters train (LoRA's adapters are part of the saved state).
LORA_KEYS = ("model.lora.rank", "model.lora.target_modules", "model.lora.sid_rows")
RESUME_KEYS = ("rl.num_generations", "train.prompts_per_step", "seed", "data.prompt_format", "data.prompt_text", "data.hold_back",
               "data.successor_hints", "data.hint_drop", "data.hint_counts", *LORA_KEYS)
SFT_RESUME_KEYS = ("sft.train.prompts_per_step", "sft.datasets", "seed", "data.prompt_format", "data.prompt_text",
                   "sft.select_on", "data.hold_back", "data.successor_hints", "data.hint_drop", "data.hint_counts", *LORA_KEYS)


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def decide_start(output_dir: str | Path, resume: str, env: dist.DistEnv) -> Path | None:
    """The checkpoint to resume (train.resume: auto, none or a path), decided on rank 0 for all ranks."""
    choice = None
    if env.is_main:
        choice = latest_checkpoint(output_dir) if resume == "auto" else (None if resume == "none" else Path(resume))
        choice = None if choice is None else str(choice)
    choice = dist.broadcast_object(choice, env)
    return None if choice is None else Path(choice)


def set_aside_superseded(output_dir: str | Path, resume: Path | None, env: dist.DistEnv,
                         extra: tuple[str, ...] = ()) -> Path | None:
    """Move what would be mistaken for this run's files out of the way (rank 0; all ranks call).

    Afresh (`resume` None): every checkpoint in output_dir, with `metrics.jsonl` and the names in
    `extra` (SFT's `best`). From a checkpoint of this directory: the checkpoints after it.
    Returns the directory they went to (None when nothing was moved), the same on every rank.
    """
    out, moved_to = Path(output_dir), None
    if env.is_main:
        root = checkpoint_root(out)
        steps = [p for p in root.iterdir() if STEP_DIR.match(p.name)] if root.is_dir() else []
        if resume is None:
            later = steps
        elif resume.resolve().parent == root.resolve():
            later = [p for p in steps if step_of(p) > step_of(resume)]
        else:
            later = []
        files = [out / name for name in ("metrics.jsonl", *extra) if (out / name).exists()] if resume is None and steps else []
        if later:
            moved_to = out / f"{SUPERSEDED}{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{new_run_id()[:4]}"
            (moved_to / "checkpoints").mkdir(parents=True)
            for p in later:
                os.replace(p, moved_to / "checkpoints" / p.name)
            for p in files:
                os.replace(p, moved_to / p.name)
        moved_to = None if moved_to is None else str(moved_to)
    moved_to = dist.broadcast_object(moved_to, env)
    return None if moved_to is None else Path(moved_to)


def check_resumable(checkpoint: Path, cfg: Config, total_steps: int, keys=RESUME_KEYS, section: str = "train") -> None:
    """Refuse to resume a checkpoint written with other batch settings, or one already past the end;
    `section` is the run's training section (`train`, or `sft.train` under SFT), for the messages."""
    if not (checkpoint / "config.yaml").is_file():
        raise SettingsError(f"{section}.resume={checkpoint}: not a grporec checkpoint (no config.yaml)")
    saved = load_config(checkpoint / "config.yaml")
    for key in keys:
        a, b = _get(saved, key), _get(cfg, key)
        if a != b:
            raise SettingsError(f"{checkpoint} was written with {key}={a}, this run has {key}={b}: resuming would change "
                                f"the run mid-way (its data order, batches or trained parameters). Keep {key}={a}, or start afresh with "
                                f"{section}.resume=none (the existing checkpoints are then moved to {SUPERSEDED}<time>/) "
                                "or another output_dir")
    step = step_of(checkpoint)
    if step > total_steps:
        raise SettingsError(f"{checkpoint} is at step {step}, past this run's last step {total_steps} "
                            f"({section}.max_steps / {section}.epochs): raise them to continue, or use {section}.resume=none")


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg
