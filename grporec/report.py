"""See runs at a glance: `python -m grporec.report RUN_DIR [RUN_DIR ...] --out DIR` (or `grporec report`).

Reads each run directory's `metrics.jsonl` (one line per step, evaluations with an `eval/`
prefix), its `config.yaml`, and every `metrics.json` an evaluation wrote below it (for example
the demo's `eval-sft/` and `eval-grpo/`), and writes PNG figures plus one `report.md` that embeds
them with a table of final metrics. Several runs are overlaid, each labelled by what differs in
their configs (the directory name when nothing does). A run directory is a GRPO or SFT
`output_dir`, or a demo root (its `grpo/` and `sft/` logs are used). Matplotlib is an optional
extra (`pip install -e ".[plot]"`), imported only here.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from grporec.errors import SettingsError

INSTALL_HINT = 'the report needs matplotlib: pip install -e ".[plot]" (or pip install matplotlib)'
# Keys that differ between any two runs without describing the recipe.
IGNORED_KEYS = ("output_dir", "model.path", "data.", "train.resume", "train.progress", "train.log_steps",
                "train.save_total_limit", "train.stop_after")
# (file name, title, y label, metric keys (a trailing * matches a prefix), log scale)
FIGURES = [
    ("reward.png", "Reward (mean over completions)", "reward", ["reward", "rewards/*"], False),
    ("signal.png", "Groups that teach nothing", "fraction of groups", ["frac_reward_zero_std", "frac_groups_without_hit"], False),
    ("kl.png", "KL to the reference (k3, mean over tokens)", "KL", ["kl"], True),
    ("grad_norm.png", "Gradient norm (before clipping)", "norm", ["grad_norm"], True),
    ("loss.png", "Loss", "loss", ["loss"], False),
    ("speed.png", "Throughput", "completions per second", ["completions_per_s"], False),
    ("eval.png", "Evaluation on the valid split", "metric", ["eval/hr@*", "eval/ndcg@*"], False),
]


@dataclass
class Run:
    path: Path
    steps: list[dict] = field(default_factory=list)  # per-step records (with "loss")
    evals: list[dict] = field(default_factory=list)  # evaluation records (eval/ keys)
    config: dict = field(default_factory=dict)
    finals: dict[str, dict] = field(default_factory=dict)  # evaluation name -> metrics.json
    label: str = ""


def load_run(path: str | Path) -> Run:
    """A run from its directory (or a demo root holding grpo/ and sft/)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run directory")
    log_dir = path if (path / "metrics.jsonl").is_file() else next(
        (path / sub for sub in ("grpo", "sft") if (path / sub / "metrics.jsonl").is_file()), None)
    if log_dir is None:
        raise FileNotFoundError(f"{path}: no metrics.jsonl here or in grpo/ or sft/ (is it a grporec run directory?)")
    run = Run(path)
    for n, line in enumerate((log_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise SettingsError(f"{log_dir / 'metrics.jsonl'}, line {n}: not valid JSON ({e.msg})") from None
        (run.evals if any(k.startswith("eval/") for k in rec) else run.steps).append(rec)
    for cfg_path in (log_dir / "config.yaml", path / "config.yaml"):
        if cfg_path.is_file():
            run.config = yaml.safe_load(cfg_path.read_text()) or {}
            break
    for m in sorted(path.glob("**/metrics.json")):
        if "checkpoints" not in m.parts:
            run.finals[str(m.parent.relative_to(path)) or "."] = json.loads(m.read_text())
    return run


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def label_runs(runs: list[Run]) -> None:
    """Label each run by the config values that differ between the runs (else its directory name)."""
    flat = [flatten(r.config) for r in runs]
    keys = sorted({k for f in flat for k in f})
    differ = [k for k in keys if not k.startswith(IGNORED_KEYS) and len({json.dumps(f.get(k)) for f in flat}) > 1]
    leaves = [k.rsplit(".", 1)[-1] for k in differ]
    short = {k: (leaf if leaves.count(leaf) == 1 else k) for k, leaf in zip(differ, leaves)}  # rl.rollout -> rollout
    for r, f in zip(runs, flat):
        r.label = ", ".join(f"{short[k]}={f.get(k)}" for k in differ) if differ and len(runs) > 1 else r.path.name


def series(records: list[dict], pattern: str) -> dict[str, tuple[list[int], list[float]]]:
    """{metric: (steps, values)} for the keys matching `pattern` (a trailing * matches a prefix)."""
    keys = sorted({k for r in records for k in r if (k.startswith(pattern[:-1]) if pattern.endswith("*") else k == pattern)})
    out = {}
    for k in keys:
        pts = [(r["step"], r[k]) for r in records if isinstance(r.get(k), (int, float)) and math.isfinite(r[k])]
        if pts:
            out[k] = ([s for s, _ in pts], [v for _, v in pts])
    return out


def smooth(values: list[float], window: int) -> list[float]:
    """Trailing moving average (the raw curve is drawn faintly behind it)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def plot(runs: list[Run], out: Path) -> list[tuple[str, str]]:
    """Write the figures that have data; returns [(file name, title)]."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    written = []
    for name, title, ylabel, patterns, log in FIGURES:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        drawn = 0
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        styles = ["-", "--", ":", "-."]
        for i, run in enumerate(runs):
            records = run.evals if name == "eval.png" else run.steps
            metrics = {k: v for p in patterns for k, v in series(records, p).items()}
            for j, (key, (x, y)) in enumerate(metrics.items()):
                if log:  # a log axis cannot show zeros (the KL of step 1, say); the JSONL has them
                    x, y = [a for a, b in zip(x, y) if b > 0], [b for b in y if b > 0]
                    if not y:
                        continue
                # one run: a colour per metric; several: a colour per run, a line style per metric
                c, ls = (colours[j % len(colours)], "-") if len(runs) == 1 else (colours[i % len(colours)], styles[j % len(styles)])
                lab = key if len(runs) == 1 else f"{key} [{run.label}]"
                window = max(1, len(y) // 20)
                if window > 1 and name != "eval.png":
                    ax.plot(x, y, color=c, alpha=0.15, linewidth=0.8)
                    ax.plot(x, smooth(y, window), color=c, linestyle=ls, label=f"{lab} (avg of {window})")
                else:
                    ax.plot(x, y, color=c, linestyle=ls, marker="o" if len(x) < 30 else None, label=lab)
                drawn += 1
        if drawn:
            ax.set_title(title)
            ax.set_xlabel("optimizer step")
            ax.set_ylabel(ylabel)
            if log:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
            fig.savefig(out / name, dpi=110, bbox_inches="tight")
            written.append((name, title))
        plt.close(fig)
    if phases_figure(plt, runs, out / "phases.png"):
        written.append(("phases.png", "Where a step's time goes"))
    return written


def phases_figure(plt, runs: list[Run], path: Path) -> bool:
    """Horizontal stacked bars: each run's mean seconds per step in each phase (time/* metrics)."""
    means = []
    for run in runs:
        times = series(run.steps[1:] or run.steps, "time/*")  # the first step includes warm-up
        means.append({k[5:]: sum(v) / len(v) for k, (_, v) in times.items()})
    phases = sorted({p for m in means for p in m})
    if not phases:
        return False
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.5 * len(runs)))
    left = [0.0] * len(runs)
    for p in phases:
        widths = [m.get(p, 0.0) for m in means]
        ax.barh(range(len(runs)), widths, left=left, label=p)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_yticks(range(len(runs)), [r.label for r in runs], fontsize=7)
    ax.set_xlabel("seconds per optimizer step (mean after the first step)")
    ax.set_title("Where a step's time goes")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def final_table(runs: list[Run], ks=("hr@1", "hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20")) -> str:
    """Markdown: one row per evaluation (the runs' metrics.json files, then their last valid evaluation)."""
    rows = []
    for run in runs:
        for where, m in run.finals.items():
            rows.append((f"{run.label}: {where} ({m.get('split', '?')}, {m.get('beams', '?')} beams)", m))
        if run.evals:
            last = run.evals[-1]
            rows.append((f"{run.label}: valid at step {last['step']}", {k[5:]: v for k, v in last.items() if k.startswith("eval/")}))
    cols = [k for k in ks if any(k in m for _, m in rows)]
    lines = ["| run: evaluation | " + " | ".join(c.upper() for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, m in rows:
        lines.append(f"| {name} | " + " | ".join(f"{m[c]:.4f}" if c in m else "" for c in cols) + " |")
    return "\n".join(lines) if rows else "(no evaluations found)"


def write_report(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Figures and report.md for the runs; returns the report's path."""
    runs = [load_run(p) for p in run_dirs]
    label_runs(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = plot(runs, out)
    lines = ["# grporec report", "", "Runs:", ""]
    for r in runs:
        last = r.steps[-1] if r.steps else {}
        lines.append(f"- **{r.label}**: `{r.path}`, {len(r.steps)} steps"
                     + (f", last step {last['step']}: reward {last.get('reward', float('nan')):.4g}, "
                        f"frac_reward_zero_std {last.get('frac_reward_zero_std', float('nan')):.3g}, kl {last.get('kl', float('nan')):.4g}"
                        if "reward" in last else ""))
    lines += ["", "## Final metrics", "", final_table(runs), ""]
    for name, title in figures:
        lines += [f"## {title}", "", f"![{title}]({name})", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report


def main(argv: list[str] | None = None, prog: str = "python -m grporec.report") -> int:
    import argparse

    from grporec import commandline as cli

    def body(args_list):
        ap = argparse.ArgumentParser(prog=prog, description="Training curves and a comparison of runs, as PNG figures and report.md.",
                                     epilog="example: python -m grporec.report runs/demo runs/office-tiny --out runs/report")
        ap.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (output_dir of a run, or a demo root)")
        ap.add_argument("--out", required=True, help="directory for the figures and report.md")
        ap.add_argument("--debug", action="store_true", help="show the full traceback of an error")
        args = ap.parse_args(args_list)
        try:
            report = write_report(args.runs, args.out)
        except ImportError as e:
            raise SettingsError(str(e)) from None
        print(f"[report] wrote {report} and its figures")

    return cli.run(body, argv)


if __name__ == "__main__":
    sys.exit(main())
