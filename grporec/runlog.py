"""Run logging: JSON lines in the run directory, a tqdm bar, and a short console line.

Only rank 0 writes. Every optimizer step's metrics go to `<output_dir>/metrics.jsonl` (one JSON
object per line, with `step`), evaluation results with an `eval/` prefix in the same file.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from tqdm import tqdm


class RunLog:
    def __init__(self, output_dir: str | Path, total_steps: int, start_step: int, enabled: bool, progress: bool,
                 log_steps: int = 1, desc: str = "grpo"):
        self.enabled = enabled
        self.log_steps = max(1, log_steps)
        self.path = Path(output_dir) / "metrics.jsonl"
        self.bar = tqdm(total=total_steps, initial=start_step, desc=desc, disable=not (enabled and progress), dynamic_ncols=True)

    def step(self, step: int, metrics: dict, keys: tuple[str, ...] = ("loss", "reward", "kl")) -> None:
        if not self.enabled:
            return
        self._write({"step": step, **metrics})
        self.bar.update(1)
        self.bar.set_postfix({k: f"{metrics[k]:.4g}" for k in keys if k in metrics})
        if step % self.log_steps == 0:
            self.bar.write(f"step {step}: " + "  ".join(f"{k}={_fmt(metrics[k])}" for k in keys + ("lr", "grad_norm") if k in metrics))

    def event(self, step: int, metrics: dict, prefix: str = "eval/") -> None:
        if not self.enabled:
            return
        self._write({"step": step, **{prefix + k: v for k, v in metrics.items()}})
        self.bar.write(f"step {step}: " + "  ".join(f"{prefix}{k}={_fmt(v)}" for k, v in metrics.items()))

    def message(self, text: str) -> None:
        if self.enabled:
            self.bar.write(text)

    def close(self) -> None:
        self.bar.close()

    def _write(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)
