"""bf16 autocast on the CPU against fp32, side by side in one run: `train.cpu_mixed_precision`.

On a CPU with AVX512-BF16 or AMX, bf16 matrix products run several times faster than fp32 ones, so
the tiny model's SFT step (its cost is the products) gains from the autocast a GPU run uses. One
kernel does not: PyTorch's CPU flash-attention backward is slower in bf16 than in fp32, which is
why `grporec.dist.autocast` takes SDPA's math kernel there; the `bf16-flash` row measures that
choice. Also reported: the loss of the same batch in each mode (the rounding the mode costs).

    python bench/cpu_bf16.py --data office --threads 1 --out bench/results/cpu_bf16_office.json
"""
from __future__ import annotations

import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import build_model, load_data, model_arguments, setup

sys.path.append(str(Path(__file__).resolve().parents[1]))
from grporec import dist  # noqa: E402
from grporec.config import TrainConfig, load_config  # noqa: E402
from grporec.data import datasets as D  # noqa: E402
from grporec.models.format import format_for  # noqa: E402
from grporec.sft import completion_loss_sum, encode  # noqa: E402


def modes(env: dist.DistEnv) -> dict:
    """Name -> a function returning the context one SFT forward and backward run under."""
    return {
        "fp32": lambda: contextlib.nullcontext(),
        "bf16": lambda: dist.autocast(env, TrainConfig(cpu_mixed_precision=True)),  # what training uses
        "bf16-flash": lambda: torch.autocast("cpu", dtype=torch.bfloat16),  # with the default SDPA kernel
    }


def main() -> int:
    ap = model_arguments(__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64, help="samples in the step (the recipe's prompts_per_step)")
    ap.add_argument("--config", default="configs/office-tiny-lastitem-bf16.yaml", help="whose model.tiny shape to build")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    device, dtype = setup(args)
    if device.type != "cpu" or dtype != torch.float32:
        raise SystemExit("cpu_bf16.py compares modes of an fp32 model on the CPU: --device cpu --dtype float32")
    env = dist.DistEnv(0, 1, 0, device, False)
    with tempfile.TemporaryDirectory() as tmp:
        catalog, rows = load_data(args.data, Path(tmp))
    if args.shape != "tiny":
        raise SystemExit("cpu_bf16.py measures the tiny model of --config (--shape tiny)")
    shape = load_config(args.config).model.tiny  # the recipe's tiny model, random weights (speed does not depend on them)
    model, tok = build_model("tiny", catalog, rows, dtype, device, tiny=shape)
    model.train()
    fmt = format_for(tok, "alpaca", None)
    samples = D.SftSuffixDataset(rows, 10, True, None).samples  # every history suffix: the recipe's longest prompts
    g = torch.Generator().manual_seed(0)
    batches = [[samples[int(i)] for i in torch.randint(len(samples), (args.batch,), generator=g)] for _ in range(args.rounds + 1)]
    encoded = [encode(fmt, b, device) for b in batches]

    def step(ctx, ids, mask, labels) -> float:
        model.zero_grad(set_to_none=True)
        with ctx():
            loss, n = completion_loss_sum(model, ids, mask, labels)
        (loss / n).backward()
        return float(loss.detach() / n)

    result = {"data": args.data, "config": args.config, "tiny": vars(shape), "threads": args.threads, "batch": args.batch,
              "tokens_per_batch": [int(e[0].numel()) for e in encoded], "modes": {}}
    for name, ctx in modes(env).items():
        step(ctx, *encoded[0])  # warm-up
        times, losses = [], []
        for e in encoded[1:]:
            t0 = time.perf_counter()
            losses.append(step(ctx, *e))
            times.append(time.perf_counter() - t0)
        result["modes"][name] = {"median_s": statistics.median(times), "losses": losses}
    base = result["modes"]["fp32"]
    for name, m in result["modes"].items():
        m["speedup_vs_fp32"] = base["median_s"] / m["median_s"]
        m["max_abs_loss_diff_vs_fp32"] = max(abs(a - b) for a, b in zip(m["losses"], base["losses"]))
        print(f"{name:>26}: {m['median_s'] * 1e3:7.1f} ms a step (forward + backward), {m['speedup_vs_fp32']:.2f}x fp32; "
              f"loss differs from fp32's by <= {m['max_abs_loss_diff_vs_fp32']:.4f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
