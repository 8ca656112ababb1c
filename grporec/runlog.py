"""Run logging: JSON lines in the run directory, a tqdm bar, and a short console line.

Only rank 0 writes. Every optimizer step's metrics go to `<output_dir>/metrics.jsonl` (one JSON
object per line, with `step`), evaluation results with an `eval/` prefix in the same file. A run
that starts at step S (0, or a resumed checkpoint's step) first drops the file's lines past S,
the steps a killed run logged after its last checkpoint, so the file keeps one line per step.
The bar is shown only on a terminal (and with progress on); elsewhere the periodic lines suffice.
With `report_to` holding "tensorboard", every number also goes to a TensorBoard SummaryWriter in
`<output_dir>/tensorboard`; with "wandb", to a Weights & Biases run (the run's config with it),
configured by wandb's own environment variables (`WANDB_PROJECT`, default "grporec";
`WANDB_ENTITY`; `WANDB_MODE=offline` for no network). The JSONL stays the source of truth.
"""
from __future__ import annotations

import importlib
import json
import math
import os
import sys
import uuid
from pathlib import Path

from tqdm import tqdm

from grporec.errors import SettingsError


REPORT_TO = ("jsonl", "tensorboard", "wandb")
WANDB_ID_FILE = "wandb-run-id"  # in output_dir: a resumed run logs on into the same wandb run
# destination -> (module it needs, pip package, a word more for the error)
OPTIONAL = {"tensorboard": ("torch.utils.tensorboard", "tensorboard", ""),
            "wandb": ("wandb", "wandb", "; WANDB_MODE=offline logs without a network")}


def check_report_to(report_to, key: str = "train.report_to") -> None:
    """Known destinations only, and the package of each optional one importable (checked before a run starts)."""
    unknown = [r for r in report_to if r not in REPORT_TO]
    if unknown:
        raise SettingsError(f"{key}: unknown {unknown[0]!r}; choose from {list(REPORT_TO)}")
    for name, (module, package, more) in OPTIONAL.items():
        if name in report_to:
            try:
                importlib.import_module(module)
            except ImportError:
                raise SettingsError(f'{key} has "{name}", which needs the {package} package: pip install {package} '
                                    f'(or pip install -e ".[{package}]"){more}') from None


def wandb_run(output_dir: Path, start_step: int, config: dict | None, job: str):
    """A wandb run for this output directory: a fresh id for a fresh run, the recorded one when
    resuming (so the curves continue), the run's config attached."""
    import wandb

    id_file = output_dir / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if start_step > 0 and id_file.is_file() else uuid.uuid4().hex[:12]
    id_file.write_text(run_id + "\n")
    return wandb.init(project=os.environ.get("WANDB_PROJECT", "grporec"), name=output_dir.name, id=run_id, resume="allow",
                      dir=str(output_dir), config=config or {}, job_type=job)


def tensorboard_writer(log_dir: Path):
    """A SummaryWriter (after `check_report_to`, which says how to install TensorBoard when it is missing)."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))


class RunLog:
    def __init__(self, output_dir: str | Path, total_steps: int, start_step: int, enabled: bool, progress: bool,
                 log_steps: int = 1, desc: str = "grpo", report_to: tuple[str, ...] = ("jsonl",), config: dict | None = None):
        check_report_to(report_to)
        self.enabled = enabled
        self.writer = tensorboard_writer(Path(output_dir) / "tensorboard") if enabled and "tensorboard" in report_to else None
        self.log_steps = max(1, log_steps)
        self.path = Path(output_dir) / "metrics.jsonl"
        if enabled:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            drop_after(self.path, start_step)
        self.wandb = wandb_run(Path(output_dir), start_step, config, desc) if enabled and "wandb" in report_to else None
        show = enabled and progress and sys.stderr.isatty()
        self.bar = tqdm(total=total_steps, initial=start_step, desc=desc, disable=not show, dynamic_ncols=True)

    def step(self, step: int, metrics: dict, keys: tuple[str, ...] = ("loss", "reward", "kl")) -> None:
        if not self.enabled:
            return
        self._write({"step": step, **metrics})
        self._scalars(step, metrics, prefix="")
        self.bar.update(1)
        self.bar.set_postfix({k: f"{metrics[k]:.4g}" for k in keys if k in metrics})
        if step % self.log_steps == 0:
            self.bar.write(f"step {step}: " + "  ".join(f"{k}={_fmt(metrics[k])}" for k in keys + ("lr", "grad_norm") if k in metrics))

    def event(self, step: int, metrics: dict, prefix: str = "eval/") -> None:
        if not self.enabled:
            return
        self._write({"step": step, **{prefix + k: v for k, v in metrics.items()}})
        self._scalars(step, metrics, prefix)
        self.bar.write(f"step {step}: " + "  ".join(f"{prefix}{k}={_fmt(v)}" for k, v in metrics.items()))

    def message(self, text: str) -> None:
        if self.enabled:
            self.bar.write(text)
            sys.stdout.flush()

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()

    def _scalars(self, step: int, metrics: dict, prefix: str) -> None:
        numbers = {prefix + k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.writer is not None:
            for k, v in numbers.items():
                self.writer.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(numbers, step=step)

    def _write(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def drop_after(path: Path, step: int) -> None:
    """Keep only the records of steps <= `step` in a JSONL log (rewritten atomically)."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [x for x in lines if x.strip() and json.loads(x).get("step", 0) <= step]
    if len(kept) != len(lines):
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, path)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)
