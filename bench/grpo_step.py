"""One GRPO optimizer step through `grporec.loop`, phase by phase (the GPU training benchmark).

    python bench/grpo_step.py --shape qwen2.5-0.5b --device cuda        # 64 prompts x 16 beams, bf16 autocast
    python bench/grpo_step.py --prompts 8 --micro 8                      # tiny model on a CPU

Builds the model (random weights, vocabulary extended with the industrial-like catalog's SID
tokens), saves it as an HF directory, and runs `--steps` steps of the real loop (constrained beam
rollouts, ranking reward, reference model, micro-batched k3-KL GRPO loss, AdamW). Reports the
phase times of the steps after the first (warm-up), completions/s, peak GPU memory, and the
share of the step in model compute (rollout decoding + reference forward + policy forward and
backward). Writes JSON, and leaves the model directory and a config in --workdir so that
`python -m grporec.evaluate --config WORKDIR/config.yaml --model WORKDIR/model` can time evaluation.
"""
from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import build_model, load_data, model_arguments, setup  # noqa: E402
from grporec import dist  # noqa: E402
from grporec.config import dump_config, load_config  # noqa: E402
from grporec.data import synth  # noqa: E402
from grporec.loop import train  # noqa: E402

PHASES = ("rollout", "reward", "reference", "policy", "optimizer")


def main():
    ap = model_arguments(__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=64, help="prompts per step")
    ap.add_argument("--generations", type=int, default=16)
    ap.add_argument("--micro", type=int, default=16, help="prompts per forward/backward micro-batch")
    ap.add_argument("--steps", type=int, default=3, help="steps run; the first is warm-up")
    ap.add_argument("--workdir", default="runs/bench-grpo-step")
    ap.add_argument("--out", default="bench/results/grpo_step.json")
    args = ap.parse_args()
    device, dtype = setup(args)
    work = Path(args.workdir)
    paths = synth.write(synth.PRESETS["industrial-like"], 0, work / "data")
    catalog, rows = load_data("industrial-like", work)
    model, tok = build_model(args.shape, catalog, rows, torch.float32, "cpu")  # fp32 master weights; autocast computes in bf16
    model.save_pretrained(work / "model")
    tok.save_pretrained(work / "model")
    del model
    data = [f"data.{k}={getattr(paths, v)}" for k, v in (("info_file", "info"), ("train_file", "train"), ("valid_file", "valid"),
                                                         ("test_file", "test"), ("index_file", "index"), ("item_file", "item"))]
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml", data + [
        f"model.path={work / 'model'}", f"output_dir={work / 'run'}", "train.resume=none", "rl.datasets=[sid_history]",
        f"rl.num_generations={args.generations}", "rl.beta=1e-3", "reward.reward_type=ranking", "train.lr=1e-6",
        f"train.prompts_per_step={args.prompts}", f"train.micro_batch_prompts={args.micro}",
        f"train.rollout_batch_prompts={args.prompts}", f"train.max_steps={args.steps}", "train.log_steps=1",
        f"train.mixed_precision={str(dtype == torch.bfloat16 or device.type == 'cuda').lower()}",
        "eval.prompt_style=eval", "eval.batch_prompts=16", "train.save_total_limit=1"])
    (work / "config.yaml").write_text(dump_config(cfg))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    summary = train(cfg, dist.DistEnv(0, 1, 0, device))
    timed = summary["history"][1:] or summary["history"]
    mean = {k: sum(h[f"time/{k}"] for h in timed) / len(timed) for k in PHASES}
    step = sum(mean.values())
    report = {
        "config": vars(args), "platform": platform.platform(), "torch": torch.__version__,
        "device_name": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "phases_s": mean, "step_s": step, "completions_per_s": args.prompts * args.generations / step,
        "model_compute_share": (mean["rollout"] + mean["reference"] + mean["policy"]) / step,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
        "steps_timed": len(timed), "history": summary["history"],
    }
    print(f"{args.shape} model, {args.prompts} prompts x {args.generations} beams per step, micro-batches of {args.micro} "
          f"prompts, {args.device}, mean of {len(timed)} steps after warm-up")
    for k in PHASES:
        print(f"  {k:10s} {mean[k]:8.3f} s  {mean[k] / step:6.1%}")
    print(f"  step       {step:8.3f} s   {report['completions_per_s']:.0f} completions/s   model compute "
          f"{report['model_compute_share']:.1%}" + (f"   peak {report['peak_memory_gib']:.1f} GiB" if report["peak_memory_gib"] else ""))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
