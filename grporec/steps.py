"""What the GRPO loop and SFT do around their steps, written once: where a run starts (a fresh
start or a checkpoint, decided on rank 0), counting non-finite steps, and when to checkpoint and
stop (a signal, the session's step budget, the last step, an early stop). Each loop keeps its own
step body, so both still read as their algorithm.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from grporec import disk, dist
from grporec.checkpoint import STEP_DIR, load_checkpoint
from grporec.config import Config, TrainConfig, dump_config
from grporec.errors import TrainingError
from grporec.optim import resumed_schedule
from grporec.resume import check_resumable, decide_start, new_run_id, set_aside_superseded
from grporec.stop import StopRequest


@dataclass
class Start:
    """Where a run starts: its state (step 0, or a checkpoint's), the checkpoint (None: fresh) and
    the lines the log should say about it."""

    state: dict
    resume: Path | None
    notes: list[str]


def start_run(out: Path, cfg: Config, tc: TrainConfig, env: dist.DistEnv, total_steps: int, state: dict, *,
              model, optimizer, scheduler, stream, keys: tuple[str, ...], optimizer_steps: int, key: str,
              reference=None, aside: tuple[str, ...] = ()) -> Start:
    """Resume from the checkpoint rank 0 picks (`tc.resume`) into model, optimizer, scheduler and
    data stream, or start `state` fresh; set another run's checkpoints (and `aside` entries) out of
    the way; write the run's config once its checks have passed."""
    resume = decide_start(out, tc.resume, env)  # on rank 0, for every rank
    notes = []
    if resume is not None:
        check_resumable(resume, cfg, total_steps, keys=keys, section=key)
        state = {"run_id": new_run_id(), **load_checkpoint(resume, model, optimizer, scheduler, reference)}
        stream.load_state_dict(state.pop("data"))
        state.pop("generator", None)  # checkpoints before rollout streams were derived per step kept one
        notes.append(resumed_schedule(scheduler, tc, optimizer_steps, key=key))
    superseded = set_aside_superseded(out, resume, env, extra=aside)  # never mix with, or prune, another run's checkpoints
    if superseded:
        notes.append(f"{out} held another run's checkpoints: moved them to {superseded}")
    if env.is_main:
        notes.append(mind_the_disk(out, tc, key, model, reference, resume))
    dist.barrier(env)
    if env.is_main:  # only now: a run that fails its checks leaves an existing run's config alone
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(dump_config(cfg))
    return Start(state, resume, [n for n in notes if n])


def mind_the_disk(out: Path, tc: TrainConfig, key: str, model, reference, resume: Path | None) -> str:
    """Drop superseded sets when asked, say what they hold, and refuse a run whose checkpoints will not fit
    (grporec.disk); the line for the log ('' when there is nothing to say)."""
    out.mkdir(parents=True, exist_ok=True)
    note = ""
    if tc.drop_superseded:
        n, freed = disk.drop_superseded(out)
        note = f"deleted {n} superseded checkpoint set(s) of earlier runs ({freed / disk.GIB:.2f} GiB; {key}.drop_superseded)" if n else ""
    elif sets := disk.superseded_sets(out):
        note = (f"{out} holds {len(sets)} superseded checkpoint set(s) of earlier runs, {disk.tree_bytes_of(sets) / disk.GIB:.2f} "
                f"GiB ({key}.drop_superseded=true deletes them)")
    existing = sum(1 for p in resume.parent.iterdir() if STEP_DIR.match(p.name)) if resume is not None else 0
    disk.check_room(out, disk.checkpoint_bytes(model, reference), tc.save_total_limit, existing, key)
    return note


def count_update(state: dict, stepped: bool, tc: TrainConfig, what: str) -> None:
    """Count a skipped (non-finite) optimizer step; `tc.max_bad_steps` in a row stop the run,
    with `what` saying what was counted and what to do."""
    state["bad_steps"] = 0 if stepped else state["bad_steps"] + 1
    state["skipped_steps"] += 0 if stepped else 1
    if state["bad_steps"] >= tc.max_bad_steps:
        raise TrainingError(f"{state['bad_steps']} consecutive {what}")


@dataclass
class StepEnd:
    save: bool  # write a checkpoint now
    stop: bool  # then leave the loop
    signalled: bool  # because of SIGTERM/SIGINT on some rank


def end_of_step(step: int, first_step: int, total_steps: int, tc: TrainConfig, stop_request: StopRequest,
                env: dist.DistEnv, early_stop: bool = False) -> StepEnd:
    """Whether to checkpoint and whether to stop after `step`: on a signal (any rank), when the
    session's `tc.stop_after` steps are done, on an early stop, at the last step, every `tc.save_steps`."""
    signalled = dist.any_rank(stop_request.requested, env)
    stop = signalled or early_stop or (tc.stop_after > 0 and step - first_step + 1 >= tc.stop_after)
    save = stop or step == total_steps or (tc.save_steps > 0 and step % tc.save_steps == 0)
    return StepEnd(save, stop, signalled)
