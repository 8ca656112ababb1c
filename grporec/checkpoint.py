"""Checkpoints that resume exactly, written so that a crash never leaves a half checkpoint.

A checkpoint is `<output_dir>/checkpoints/step-NNNNNNN/` holding
- `policy/`: the policy in HF format (safetensors, config, tokenizer), for `from_pretrained`, the
  evaluator and sharing; under FSDP gathered once, onto rank 0, which writes it;
- `state/`: what resuming needs of the tensors, in `torch.distributed.checkpoint` (DCP) format:
  the policy, the optimizer and (once synced away from the initial model) the reference. Every
  rank writes its own shards, in parallel, and reads back only what its shards need, so neither
  the optimizer nor the reference is ever gathered onto one rank; DCP reshards on loading, so a
  checkpoint written by N ranks resumes on M (one process included);
- `trainer_state.pt`: scheduler, RNG, data order and counters (small, no tensors of the model);
- `config.yaml` and `run_id`.
It is written to a temporary directory and renamed into place (atomic on one filesystem; under
torchrun all ranks must see the same filesystem, as DCP requires), so the newest complete
checkpoint is always loadable; the oldest of the writing run's beyond `keep` are deleted.
Checkpoints of grporec before DCP (the optimizer in `trainer_state.pt`) are refused with a message
(their `policy/` still starts a new run).
"""
from __future__ import annotations

import errno
import os
import random
import re
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from grporec.config import dump_config
from grporec.dist import DistEnv, barrier
from grporec.models.settings import record_settings, settings_of
from grporec.models.lora import save_adapter, split_for_saving

STEP_DIR = re.compile(r"^step-(\d+)$")
STATE_DIR = "state"  # the DCP checkpoint of policy, optimizer and reference
RUN_ID_FILE = "run_id"  # in each checkpoint: which run wrote it (pruning removes only the writing run's own)
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def step_of(checkpoint: str | Path) -> int:
    """The step number of a `step-NNNNNNN` checkpoint directory."""
    m = STEP_DIR.match(Path(checkpoint).name)
    if m is None:
        raise FileNotFoundError(f"{checkpoint}: not a checkpoint directory (expected a name like step-0000100)")
    return int(m.group(1))


def run_id_of(checkpoint: Path) -> str | None:
    """The id of the run that wrote a checkpoint (None for checkpoints written before run ids)."""
    f = Path(checkpoint) / RUN_ID_FILE
    return f.read_text().strip() if f.is_file() else None


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint (temporary directories are ignored)."""
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return None
    steps = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir())
    return steps[-1][1] if steps else None


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _disk_full(e: BaseException) -> bool:
    """True for the errors a full disk raises: ENOSPC, or torch's zip writer failing mid-file (also
    when DCP reports them, wrapped, from any rank's writer)."""
    if isinstance(e, CheckpointException):
        return any(_disk_full(f[0] if isinstance(f, tuple) else f) for f in e.failures.values())
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(e)
    return "No space left" in text or "unexpected pos" in text or "file write failed" in text


@contextmanager
def _cleanup_on_failure(tmp: Path, final: Path, env: DistEnv):
    """Remove the partial temporary directory if writing fails; say plainly when the disk is full."""
    try:
        yield
    except (OSError, RuntimeError, CheckpointException) as e:  # DCP's is a BaseException
        if env.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        if _disk_full(e):
            full = OSError(f"no space left on the device while writing {final} (the partial {tmp} was removed; "
                           f"the previous checkpoint is intact): free disk space and run again to resume")
            full.errno = errno.ENOSPC
            raise full from e
        raise


@contextmanager
def _one_process_dcp():
    """DCP warns on every save and load without a process group, the one-process case it supports."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        yield


def _remove(path: Path) -> None:
    """Delete a directory so that a kill midway never leaves it half-deleted under its own name:
    rename it aside (atomic) first, then delete the renamed copy."""
    gone = path.parent / f".del-{path.name}"
    os.replace(path, gone)
    shutil.rmtree(gone, ignore_errors=True)


def save_hf(model: torch.nn.Module, tokenizer, out: Path, env: DistEnv, settings: dict | None = None) -> None:
    """Save a (possibly FSDP-sharded) model in HF format; all ranks must call this.

    Training runs with `use_cache=False`; the saved config says `use_cache: true`, as for any model
    meant for generation (and as its generation_config.json does). With `settings`
    (`grporec.models.settings.settings_of(cfg)`), the prompt settings it was trained with are
    recorded beside it (`grporec.json`), for whatever loads it next.
    """
    state = get_model_state_dict(model, options=_FULL)
    if env.is_main:
        state, adapter, adapter_config = split_for_saving(model, state)  # LoRA: merged, and the adapter alone
        training_value = model.config.use_cache
        model.config.use_cache = True
        try:
            model.save_pretrained(str(out), state_dict=state, safe_serialization=True)
        finally:
            model.config.use_cache = training_value
        if adapter is not None:
            save_adapter(out / "adapter", adapter, adapter_config)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(out))
        if settings is not None:
            record_settings(out, settings)


def save_model_atomically(model: torch.nn.Module, tokenizer, out: str | Path, env: DistEnv,
                          settings: dict | None = None) -> Path:
    """Save in HF format to `out` via a temporary directory and a rename; all ranks call this."""
    out = Path(out)
    tmp = out.parent / f".tmp-{out.name}"
    if env.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
    barrier(env)
    with _cleanup_on_failure(tmp, out, env):
        save_hf(model, tokenizer, tmp, env, settings)
    if env.is_main:
        old = out.parent / f".old-{out.name}"
        if out.exists():
            os.replace(out, old)  # keep the previous model until the new one is in place
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    barrier(env)
    return out


def save_checkpoint(
    output_dir: str | Path,
    step: int,
    env: DistEnv,
    cfg,
    policy: torch.nn.Module,
    tokenizer,
    optimizer: torch.optim.Optimizer,
    scheduler,
    trainer_state: dict,
    reference: torch.nn.Module | None = None,
    keep: int = 2,
) -> Path:
    """Write checkpoint `step` atomically and prune old ones. Returns its final path.

    Pruning keeps the newest `keep` checkpoints of the run that is writing (`trainer_state`'s
    `run_id`) and never touches another run's.
    """
    run_id = trainer_state.get("run_id")
    root = checkpoint_root(output_dir)
    final = root / f"step-{step:07d}"
    tmp = root / f".tmp-step-{step:07d}"
    if env.is_main:
        for leftover in root.glob(".del-step-*"):  # a kill while pruning: finish deleting
            shutil.rmtree(leftover, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(env)
    with _cleanup_on_failure(tmp, final, env):
        save_hf(policy, tokenizer, tmp / "policy", env, settings_of(cfg))
        with _one_process_dcp():
            dcp.save(sharded_state(policy, optimizer, reference), checkpoint_id=str(tmp / STATE_DIR), no_dist=not env.distributed)
        if env.is_main:
            torch.save({"scheduler": scheduler.state_dict(), "rng": rng_state(), "trainer": trainer_state, "step": step,
                        "has_reference": reference is not None}, tmp / "trainer_state.pt")
            (tmp / "config.yaml").write_text(dump_config(cfg))
            if run_id is not None:
                (tmp / RUN_ID_FILE).write_text(run_id + "\n")
    if env.is_main:
        aside = root / f".old-step-{step:07d}"
        if final.exists():  # re-saving a step: move the old copy aside until the new one is in place
            os.replace(final, aside)
        os.replace(tmp, final)  # atomic: readers see the old set or the new complete one
        shutil.rmtree(aside, ignore_errors=True)
        old = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and run_id_of(p) == run_id)
        for _, p in old[: max(0, len(old) - keep)]:
            _remove(p)
    barrier(env)
    return final


def sharded_state(policy, optimizer, reference=None) -> dict:
    """What DCP saves and loads: this rank's shards of the policy, optimizer and reference, keyed
    by parameter name (so that any number of ranks reads it)."""
    model_state, optimizer_state = get_state_dict(policy, optimizer)
    state = {"policy": model_state, "optimizer": optimizer_state}
    if reference is not None:
        state["reference"] = get_model_state_dict(reference)
    return state


def load_checkpoint(path: str | Path, policy, optimizer, scheduler, reference=None) -> dict:
    """Restore model, optimizer, scheduler and RNG state in place; returns the trainer state.

    The reference is restored when the checkpoint holds one (it had been synced); otherwise it
    stays the initial model it was loaded as. All ranks call this.
    """
    path = Path(path)
    if not (path / "trainer_state.pt").is_file() or not (path / "policy").is_dir():
        raise FileNotFoundError(f"{path}: not a grporec checkpoint (no trainer_state.pt / policy/)")
    if not (path / STATE_DIR).is_dir():
        raise FileNotFoundError(f"{path}: written by a grporec before sharded checkpoints (no {STATE_DIR}/); resume it "
                                f"with that version, or start a new run from its policy/ (model.path={path / 'policy'})")
    state = torch.load(path / "trainer_state.pt", weights_only=False)
    tensors = sharded_state(policy, optimizer, reference if state["has_reference"] else None)
    with _one_process_dcp():
        dcp.load(tensors, checkpoint_id=str(path / STATE_DIR), no_dist=not torch.distributed.is_initialized())
    set_state_dict(policy, optimizer, model_state_dict=tensors["policy"], optim_state_dict=tensors["optimizer"])
    if "reference" in tensors:
        set_model_state_dict(reference, tensors["reference"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state["trainer"]
