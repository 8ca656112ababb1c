"""Peak memory of one GRPO step, phase by phase: full fine-tuning vs LoRA, with and without
activation checkpointing, for several group sizes (issue 22's memory table).

    python bench/memory.py --shape tiny                           # CPU: process peak RSS per phase
    python bench/memory.py --shape qwen2.5-0.5b --prompts 2       # the 0.5B shape on a CPU
    python bench/memory.py --shape qwen2.5-0.5b --device cuda     # GPU: torch.cuda.max_memory_allocated

Each setting runs in its own process (a clean peak), two steps of the real loop (`grporec.loop`);
the second step is measured. Phases are grporec.loop's: rollout (constrained beam search),
reference (frozen log-probs; for LoRA the policy with its adapters off) and policy update
(forward + backward over the micro-batches, and the optimizer step). On a CPU a phase's figure is
the process's peak resident memory during it (Linux `VmHWM`, reset before each phase after
returning freed memory to the system), so it includes the weights, optimizer state and Python;
on CUDA it is the peak of allocated tensor memory during it. Writes JSON and prints a table.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PhasePeak, build_model, load_data, model_arguments, setup  # noqa: E402

PHASES = ("rollout", "reference", "update")


def one_setting(args) -> dict:
    """Run in a child process: two loop steps of one setting, the second one's peaks."""
    from grporec import dist, loop
    from grporec.config import load_config

    device, _ = setup(args)
    meter = PhasePeak(device)
    steps = {"n": 0}
    real = {name: getattr(loop, name) for name in ("roll_out", "add_logps", "policy_backward", "guarded_step")}

    def on_second_step(fn, phase):
        wrapped = meter.wrap(fn, phase)
        return lambda *a, **k: (wrapped if steps["n"] >= 1 else fn)(*a, **k)


    def guarded_step(*a, **k):
        out = on_second_step(real["guarded_step"], "update")(*a, **k)
        steps["n"] += 1
        return out

    loop.roll_out, loop.add_logps = on_second_step(real["roll_out"], "rollout"), on_second_step(real["add_logps"], "reference")
    loop.policy_backward, loop.guarded_step = on_second_step(real["policy_backward"], "update"), guarded_step
    work = Path(args.workdir)
    cfg = load_config(work / "config.yaml", [
        f"output_dir={work / 'run'}", "train.max_steps=2", "train.resume=none", f"rl.num_generations={args.generations}",
        f"train.gradient_checkpointing={str(args.ckpt).lower()}",
        *((f"model.lora.rank={args.lora}", "rl.sync_ref_model=false") if args.lora else ())])
    t = time.perf_counter()
    loop.train(cfg, dist.DistEnv(0, 1, 0, device))
    return {"peak_gib": meter.peaks, "seconds": time.perf_counter() - t}


def prepare(args) -> None:
    """The model directory and config every setting's process uses."""
    from grporec.config import dump_config, load_config
    from grporec.data import synth

    work = Path(args.workdir)
    paths = synth.write(synth.PRESETS["industrial-like"], 0, work / "data")
    if not (work / "model" / "config.json").is_file():
        catalog, rows = load_data("industrial-like", work)
        model, tok = build_model(args.shape, catalog, rows, torch.float32, "cpu")
        model.save_pretrained(work / "model")
        tok.save_pretrained(work / "model")
    data = [f"data.{k}={getattr(paths, v)}" for k, v in (("info_file", "info"), ("train_file", "train"), ("valid_file", "valid"),
                                                         ("test_file", "test"), ("index_file", "index"), ("item_file", "item"))]
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml", data + [
        f"model.path={work / 'model'}", "train.resume=none", "rl.datasets=[sid_history]", "rl.beta=1e-3",
        "reward.reward_type=ranking", "train.lr=1e-6", f"train.prompts_per_step={args.prompts}",
        f"train.micro_batch_prompts={args.micro}", f"train.rollout_batch_prompts={args.prompts}", "train.log_steps=1",
        f"train.mixed_precision={str(args.device.startswith('cuda')).lower()}", "train.progress=false",
        "train.save_steps=100000", "train.save_total_limit=1", "train.report_to=[jsonl]"])
    (work / "config.yaml").write_text(dump_config(cfg))


def main():
    ap = model_arguments(__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=4, help="prompts per step (one rank)")
    ap.add_argument("--micro", type=int, default=2, help="prompts per forward/backward micro-batch")
    ap.add_argument("--groups", type=int, nargs="+", default=[8, 16, 32], help="group sizes G")
    ap.add_argument("--lora-rank", type=int, default=16)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--generations", type=int, default=16, help=argparse.SUPPRESS)
    ap.add_argument("--lora", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.workdir = args.workdir or f"runs/bench-memory-{args.shape}"
    if args.one:
        print(json.dumps(one_setting(args)))
        return
    prepare(args)
    rows = []
    out = Path(args.out or f"bench/results/memory_{args.shape}_{args.device.split(':')[0]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    for g in args.groups:
        for lora in (0, args.lora_rank):
            for ckpt in (False, True):
                cmd = [sys.executable, __file__, "--one", "--shape", args.shape, "--device", args.device,
                       "--threads", str(args.threads), "--workdir", args.workdir, "--prompts", str(args.prompts),
                       "--micro", str(args.micro), "--generations", str(g), "--lora", str(lora)] + (["--ckpt"] if ckpt else [])
                r = subprocess.run(cmd, capture_output=True, text=True)
                shutil.rmtree(Path(args.workdir) / "run", ignore_errors=True)  # its checkpoint: GBs for the 0.5B shape
                if r.returncode != 0:
                    raise SystemExit(f"setting G={g} lora={lora} ckpt={ckpt} failed:\n{r.stderr[-3000:]}")
                res = json.loads(r.stdout.strip().splitlines()[-1])
                rows.append({"G": g, "mode": f"LoRA r{lora}" if lora else "full", "checkpointing": ckpt, **res})
                p = res["peak_gib"]
                print(f"G={g:3d} {rows[-1]['mode']:9s} ckpt={'on ' if ckpt else 'off'}  " +
                      "  ".join(f"{k} {p[k]:6.2f}" for k in PHASES if k in p) + f"  GiB  ({res['seconds']:.0f} s)", flush=True)
                write(out, args, rows)  # after every setting: a run stopped part-way keeps what it measured
    print(f"wrote {out}")


def write(out: Path, args, rows: list[dict]) -> None:
    out.write_text(json.dumps({"config": vars(args), "platform": platform.platform(), "torch": torch.__version__,
                               "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                               "measure": "cuda max_memory_allocated" if args.device.startswith("cuda") else "process VmHWM (peak RSS)",
                               "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
