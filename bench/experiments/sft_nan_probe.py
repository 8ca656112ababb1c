"""Which attention path gives SFT its NaN gradients on a GPU? (a diagnostic, not a test)

    python bench/experiments/sft_nan_probe.py --steps 300 --out nan_probe.json                 # on a CUDA machine
    python bench/experiments/sft_nan_probe.py --steps 4 --variants default --device cpu        # a dry run

On an H200 (bf16 autocast) about 4% of the Office recipe's SFT steps had a finite loss and a NaN
gradient norm, and were skipped (docs/results.md, "The last-item recipe"); on a CPU in fp32, none.
This runs the recipe's first stage (compact prompts, suffix samples) for `--steps` steps per
variant, from the same seed, and counts the skipped steps:
  default   SDPA as transformers calls it, bf16 autocast (what the recipe ran);
  math      SDPA restricted to its math backend (`torch.nn.attention.sdpa_kernel`);
  fp32      no autocast (`sft.train.mixed_precision=false`), default SDPA;
  eager     transformers' eager attention (`attn_implementation="eager"` on the loaded model).
A variant with none skipped where `default` has some points at the kernel it avoids.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from grporec import dist  # noqa: E402
from grporec.config import load_config  # noqa: E402
from grporec.data.prepare import ensure_derived_data  # noqa: E402

VARIANTS = ("default", "math", "fp32", "eager")


def attention_context(variant: str):
    if variant == "math":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.MATH])
    return contextlib.nullcontext()


def run(variant: str, args, out_dir: Path) -> dict:
    from grporec import sft

    overrides = [f"output_dir={out_dir / variant}", "data.prompt_text=compact", "sft.datasets=[sid_history,sid_suffix,title2sid]",
                 f"sft.train.max_steps={args.steps}", f"sft.train.eval_steps={args.steps}", "sft.select_on=loss",
                 "sft.valid_max_rows=64", "sft.train.progress=false", "sft.train.log_steps=1000", "sft.train.save_total_limit=1",
                 f"sft.train.mixed_precision={'false' if variant == 'fp32' else 'true'}", *args.overrides]
    cfg = load_config(args.config, overrides)
    ensure_derived_data(cfg)
    env = dist.DistEnv(0, 1, 0, torch.device(args.device))
    real_init = sft.init_model
    if variant == "eager":  # the same model, attention through transformers' eager path
        def init_eager(*a, **k):
            model, tok = real_init(*a, **k)
            if hasattr(model, "set_attn_implementation"):
                model.set_attn_implementation("eager")
            else:
                model.config._attn_implementation = "eager"
            return model, tok
        sft.init_model = init_eager
    t0 = time.perf_counter()
    try:
        with attention_context(variant):
            result = sft.train_sft(cfg, env)
    finally:
        sft.init_model = real_init
    h = result["history"]
    skipped = [i + 1 for i, m in enumerate(h) if m["grad_norm"] != m["grad_norm"]]  # NaN != NaN: the steps with a NaN norm
    return {"variant": variant, "steps": len(h), "skipped": h[-1]["skipped_steps"], "nan_grad_steps": skipped[:50],
            "loss_last": h[-1]["loss"], "seconds": time.perf_counter() - t0}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "office-tiny.yaml"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default="sft_nan_probe.json")
    args, args.overrides = ap.parse_known_args()
    from grporec import commandline as cli

    cli.quiet_transformers()
    results = []
    with tempfile.TemporaryDirectory() as tmp:  # no checkpoint outlives the probe
        for variant in args.variants:
            results.append(run(variant, args, Path(tmp)))
            print(json.dumps(results[-1]), flush=True)
            Path(args.out).write_text(json.dumps({"device": args.device, "torch": torch.__version__, "results": results}, indent=1))


if __name__ == "__main__":
    main()
