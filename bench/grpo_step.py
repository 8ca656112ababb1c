"""One GRPO optimizer step through `grporec.loop`, phase by phase, with its distance to the hardware.

    python bench/grpo_step.py --shape qwen2.5-0.5b --device cuda        # 64 prompts x 16 beams, bf16 autocast
    python bench/grpo_step.py --shape qwen2.5-0.5b --device cuda --compare 612cd7c   # old code and this, one run
    python bench/grpo_step.py --prompts 8 --micro 8                      # tiny model on a CPU

Builds the model (random weights, the real vocabulary extended with the industrial-like catalog's
SID tokens), saves it as an HF directory, and runs `--steps` steps of the real loop (constrained
beam rollouts, ranking reward, reference model, micro-batched k3-KL GRPO loss, AdamW). Reports,
for the steps after the first (warm-up): phase times, achieved TFLOP/s and the fraction of the
device's dense bf16 peak (MFU) per model phase, from the FLOP count of bench/flops.py over the
tensors each phase actually processed, and peak allocated memory per phase (CUDA).

`--compare REV` times the code at git revision REV (a worktree under --workdir) and the working
tree's code with this same script, in child processes on the same model and data, `--rounds` times
in alternating order, and writes the medians and their ratio: the speed-up is measured side by
side, not against an old JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if "--code" in sys.argv:  # time another checkout's grporec (a worktree of an older commit) with this script
    sys.path.insert(0, str(Path(sys.argv[sys.argv.index("--code") + 1]).resolve()))
else:
    sys.path.insert(0, str(REPO))
sys.path.insert(1, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import flops as F  # noqa: E402
from common import PhasePeak, build_model, load_data, model_arguments, setup  # noqa: E402

import grporec  # noqa: E402

# The checkout whose grporec this process runs: --compare's old code must be what its child imports (until
# this was checked, bench/common.py put the working tree first and both sides of --compare ran the same code).
CODE = Path(grporec.__file__).resolve().parents[1]

PHASES = ("rollout", "reward", "reference", "policy", "optimizer")
MODEL_PHASES = ("rollout", "reference", "policy")


class StepShapes:
    """Wraps the loop's stage functions to record, per step, the FLOPs of the tensors each model
    phase processed (decode batches for the rollout, micro-batches for the reference and policy)."""

    def __init__(self, loop, shape: F.Shape, recompute: bool):
        self.flops, self.shape, self.recompute, self.step = [], shape, recompute, -1
        self.real = {n: getattr(loop, n) for n in ("roll_out", "add_logps", "policy_backward")}
        loop.roll_out, loop.add_logps, loop.policy_backward = self.roll_out, self.add_logps, self.policy_backward

    def _add(self, phase: str, n: int) -> None:
        self.flops[self.step][phase] = self.flops[self.step].get(phase, 0) + n

    @staticmethod
    def _dims(prompt_ids, completion_ids):
        return prompt_ids.shape[0], prompt_ids.shape[1], completion_ids.shape[0], completion_ids.shape[1]

    def roll_out(self, *a, **k):
        self.step += 1
        self.flops.append({})
        chunks = self.real["roll_out"](*a, **k)
        for ch in chunks:
            self._add("rollout", F.rollout(self.shape, *self._dims(ch.rollout.prompt_ids, ch.rollout.completion_ids)))
        return chunks

    def add_logps(self, batches, *a, **k):
        for mb in batches:
            self._add("reference", F.logps_forward(self.shape, *self._dims(mb.prompt_ids, mb.completion_ids)))
        return self.real["add_logps"](batches, *a, **k)

    def policy_backward(self, policy, batches, *a, **k):
        for mb in batches:
            self._add("policy", F.policy(self.shape, *self._dims(mb.prompt_ids, mb.completion_ids), self.recompute))
        return self.real["policy_backward"](policy, batches, *a, **k)


def prepare(args, work: Path) -> list[str]:
    """The model directory and data under `work` (once); the config overrides that point at them."""
    from grporec.data import synth

    paths = synth.write(synth.PRESETS["industrial-like"], 0, work / "data")
    if not (work / "model" / "config.json").exists():
        catalog, rows = load_data("industrial-like", work)
        model, tok = build_model(args.shape, catalog, rows, torch.float32, "cpu")  # fp32 masters; bf16 compute
        model.save_pretrained(work / "model")
        tok.save_pretrained(work / "model")
    return [f"data.{k}={getattr(paths, v)}" for k, v in (("info_file", "info"), ("train_file", "train"),
            ("valid_file", "valid"), ("test_file", "test"), ("index_file", "index"), ("item_file", "item"))]


def run(args) -> dict:
    from grporec import dist, loop
    from grporec.config import TrainConfig, dump_config, load_config

    device, dtype = setup(args)
    work = Path(args.workdir)
    data = prepare(args, work)
    overrides = data + [
        f"model.path={work / 'model'}", f"output_dir={work / 'run'}", "train.resume=none", "rl.datasets=[sid_history]",
        f"rl.num_generations={args.generations}", "rl.beta=1e-3", "reward.reward_type=ranking", "train.lr=1e-6",
        f"train.prompts_per_step={args.prompts}", f"train.micro_batch_prompts={args.micro}",
        f"train.rollout_batch_prompts={args.prompts}", f"train.max_steps={args.steps}", "train.log_steps=1",
        f"train.mixed_precision={str(dtype == torch.bfloat16 or device.type == 'cuda').lower()}",
        "eval.prompt_style=eval", "eval.batch_prompts=16", "train.save_total_limit=1", "train.progress=false"]
    if "logps_batch_prompts" in TrainConfig.__dataclass_fields__:  # code that has it: no-grad forwards of the whole batch
        overrides.append(f"train.logps_batch_prompts={args.prompts}")
    cfg = load_config(REPO / "configs" / "tiny.yaml", overrides)
    (work / "config.yaml").write_text(dump_config(cfg))
    from transformers import AutoConfig

    shapes = StepShapes(loop, F.Shape.of(AutoConfig.from_pretrained(work / "model")), recompute=False)
    meter = PhasePeak(device)
    if device.type == "cuda":  # peak allocated bytes per model phase (all steps; the first is no higher)
        loop.roll_out, loop.add_logps = meter.wrap(loop.roll_out, "rollout"), meter.wrap(loop.add_logps, "reference")
        loop.policy_backward = meter.wrap(loop.policy_backward, "policy")
        torch.cuda.reset_peak_memory_stats()
    counter = None
    profiler = None
    if args.profile:  # torch.profiler over every step, each phase a `phase/<name>` range (bench/host_ops.py)
        from host_ops import PhaseProfiler

        profiler = PhaseProfiler(device)
        loop.roll_out, loop.add_logps = profiler.wrap(loop.roll_out, "rollout"), profiler.wrap(loop.add_logps, "reference")
        loop.policy_backward = profiler.wrap(loop.policy_backward, "policy")
        loop.guarded_step = profiler.wrap(loop.guarded_step, "optimizer")
        with profiler:
            summary = loop.train(cfg, dist.DistEnv(0, 1, 0, device))
    elif args.count_ops:  # ops dispatched per phase, under bf16 autocast as a GPU computes (bench/host_ops.py)
        from host_ops import OpCounter, autocast_for

        counter = OpCounter()
        loop.roll_out, loop.add_logps = counter.wrap(loop.roll_out, "rollout"), counter.wrap(loop.add_logps, "reference")
        loop.policy_backward = counter.wrap(loop.policy_backward, "policy")
        with counter, autocast_for(device):
            summary = loop.train(cfg, dist.DistEnv(0, 1, 0, device))
    else:
        summary = loop.train(cfg, dist.DistEnv(0, 1, 0, device))
    timed = list(range(1, len(summary["history"]))) or [0]
    mean = {k: sum(summary["history"][i][f"time/{k}"] for i in timed) / len(timed) for k in PHASES}
    step = sum(mean.values())
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else F.device_peak(name) if device.type == "cuda" else None
    achieved = {}
    for k in MODEL_PHASES:
        f = sum(shapes.flops[i].get(k, 0) for i in timed) / len(timed)
        achieved[k] = {"flops": f, "tflop_per_s": f / mean[k] / 1e12, "mfu": f / mean[k] / peak if peak else None}
    return {
        "config": vars(args), "platform": platform.platform(), "torch": torch.__version__, "device_name": name,
        "code": str(CODE), "peak_bf16_tflop_per_s": peak / 1e12 if peak else None,
        "phases_s": mean, "step_s": step, "completions_per_s": args.prompts * args.generations / step,
        "model_compute_share": sum(mean[k] for k in MODEL_PHASES) / step, "achieved": achieved,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
        "phase_peak_memory_gib": meter.peaks or None, "steps_timed": len(timed), "history": summary["history"],
        "ops": counter.summary(len(summary["history"])) if counter else None,
        "profile": profiler.summary() if profiler else None,
    }


def describe(r: dict) -> str:
    c = r["config"]
    micro = c["micro"] or f"auto ({(r.get('history') or [{}])[-1].get('micro_batch_prompts', '?')} prompts)"
    lines = [f"{c['shape']} model, {c['prompts']} prompts x {c['generations']} beams, micro-batches of {micro}, "
             f"{r['device_name']}, code {r['code']}, mean of {r['steps_timed']} steps after warm-up"]
    for k in PHASES:
        a = r["achieved"].get(k)
        extra = (f"  {a['tflop_per_s']:8.2f} TFLOP/s" + (f"  MFU {a['mfu']:6.1%}" if a["mfu"] is not None else "")) if a else ""
        mem = (r["phase_peak_memory_gib"] or {}).get(k)
        lines.append(f"  {k:10s} {r['phases_s'][k]:8.3f} s  {r['phases_s'][k] / r['step_s']:6.1%}{extra}"
                     + (f"  peak {mem:.1f} GiB" if mem else ""))
    lines.append(f"  step       {r['step_s']:8.3f} s   {r['completions_per_s']:.0f} completions/s   model compute "
                 f"{r['model_compute_share']:.1%}" + (f"   peak {r['peak_memory_gib']:.1f} GiB" if r["peak_memory_gib"] else ""))
    prof = r.get("profile")
    for phase, p in ((prof or {}).get("phases") or {}).items():
        lines.append(f"  profile {phase:10s} {p['calls']} calls: host {p['host_s']:.3f} s, device {p['device_s']:.3f} s (all steps)")
    if prof:
        lines.append(f"top operations by {prof['sort']}:\n{prof['table']}")
    for phase, o in (r.get("ops") or {}).items():
        lines.append(f"  ops {phase:10s} {o['work_per_step']:9.0f} work-launching ({o['total_per_step']:.0f} with views), "
                     f"{o['syncs_per_step']:.0f} host syncs per step")
    return "\n".join(lines)


def compare(args) -> dict:
    """Both codes timed by this script in child processes on the same model and data, `--rounds`
    times in alternating order (old first, then new first, ...); per phase the median of the rounds,
    and the ratio of the medians."""
    work = Path(args.workdir)
    tree = work / f"code-{args.compare}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree.resolve()), args.compare], check=True)
    runs = {"old": [], "new": []}
    for r in range(args.rounds):
        for label in (("old", "new") if r % 2 == 0 else ("new", "old")):
            dest = work / f"{label}-{r}.json"
            cmd = [sys.executable, __file__, *_without(sys.argv[1:], "--compare", "--out", "--workdir"),
                   "--code", str(tree if label == "old" else REPO), "--out", str(dest), "--workdir", str(work / "shared")]
            subprocess.run(cmd, check=True)
            runs[label].append(json.loads(dest.read_text()))
    out = {}
    for label, reports in runs.items():
        rep = dict(reports[0])
        rep["phases_s"] = {k: statistics.median(x["phases_s"][k] for x in reports) for k in PHASES}
        rep["step_s"] = statistics.median(x["step_s"] for x in reports)
        rep["rounds_step_s"] = [x["step_s"] for x in reports]
        for k in MODEL_PHASES:
            a = rep["achieved"][k]
            a["tflop_per_s"] = a["flops"] / rep["phases_s"][k] / 1e12
            a["mfu"] = a["flops"] / rep["phases_s"][k] / (rep["peak_bf16_tflop_per_s"] * 1e12) if rep["peak_bf16_tflop_per_s"] else None
        rep["completions_per_s"] = args.prompts * args.generations / rep["step_s"]
        rep["steps_timed"] = f"{reports[0]['steps_timed']} per round, median of {len(reports)} rounds"
        rep.pop("history", None)
        out[label] = rep
    out["speedup"] = {k: out["old"]["phases_s"][k] / out["new"]["phases_s"][k] for k in MODEL_PHASES}
    out["speedup"]["step"] = out["old"]["step_s"] / out["new"]["step_s"]
    if out["old"].get("ops") and out["new"].get("ops"):  # --count-ops: work-launching ops per step, old / new
        out["ops_ratio"] = {k: out["old"]["ops"][k]["work_per_step"] / out["new"]["ops"][k]["work_per_step"]
                            for k in out["new"]["ops"] if k in out["old"]["ops"]}
        out["ops_ratio"]["step"] = (sum(o["work_per_step"] for o in out["old"]["ops"].values())
                                    / sum(o["work_per_step"] for o in out["new"]["ops"].values()))
    if out["old"]["peak_memory_gib"]:
        out["memory_ratio"] = out["new"]["peak_memory_gib"] / out["old"]["peak_memory_gib"]
    return out


def _without(argv: list[str], *options: str) -> list[str]:
    """argv less the given options and their values (`--opt value` or `--opt=value`)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in options:
            skip = True
        elif not any(a.startswith(o + "=") for o in options):
            out.append(a)
    return out


def main():
    ap = model_arguments(__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=64, help="prompts per step")
    ap.add_argument("--generations", type=int, default=16)
    ap.add_argument("--micro", type=int, default=16, help="prompts per forward/backward micro-batch (0: the largest that fits)")
    ap.add_argument("--steps", type=int, default=3, help="steps run; the first is warm-up")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's bf16 peak, when its name is not known")
    ap.add_argument("--compare", default=None, metavar="REV", help="also time the code at git revision REV, side by side")
    ap.add_argument("--code", default=None, help=argparse.SUPPRESS)  # set by --compare for its child processes
    ap.add_argument("--count-ops", action="store_true", help="count the aten ops each phase dispatches (under bf16 "
                    "autocast; the counting slows the run, so its times are not the plain step's)")
    ap.add_argument("--profile", action="store_true", help="torch.profiler over the run: per phase its host and device "
                    "time, and the top operations (in the JSON and printed; profiling slows the run, so its times are "
                    "not the plain step's)")
    ap.add_argument("--workdir", default="runs/bench-grpo-step")
    ap.add_argument("--out", default="bench/results/grpo_step.json")
    ap.add_argument("--print-code", action="store_true", help=argparse.SUPPRESS)  # which checkout runs (tests)
    args = ap.parse_args()
    if args.print_code:
        print(CODE)
        return
    if args.code and CODE != Path(args.code).resolve():
        raise SystemExit(f"--code {args.code}: this process imported grporec from {CODE}")
    if args.compare:
        report = compare(args)
        for label in ("old", "new"):
            print(describe(report[label]))
        print("speed-up (old / new): " + "  ".join(f"{k} {v:.2f}x" for k, v in report["speedup"].items())
              + (f"   memory new/old {report['memory_ratio']:.2f}" if "memory_ratio" in report else ""))
        if "ops_ratio" in report:
            print("work-launching ops (old / new): " + "  ".join(f"{k} {v:.2f}x" for k, v in report["ops_ratio"].items()))
    else:
        report = run(args)
        print(describe(report))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
