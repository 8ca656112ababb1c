"""SFT micro-batches in the stream's order against length-sorted ones (`sft.length_sorted_micro_batches`), side by side.

A step's samples are left-padded to their micro-batch's longest; the Office mixes put 20-token last-item prompts
beside 60-token title prompts, so one micro-batch of 64 is mostly padding. Sorting the step's samples by length
before splitting leaves the gradient the same token-weighted sum. Per setting: the median time of a step's
forwards and backwards (the recipe's tiny model, random weights), the share of real tokens among the positions
computed, and the loss sum (equal up to rounding).

    python bench/sft_micro_batches.py --threads 1 --out bench/results/sft_micro_batches_office.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))
from grporec import dist  # noqa: E402
from grporec.config import TrainConfig, load_config  # noqa: E402
from grporec.data.load import load_data_catalog  # noqa: E402
from grporec.data.prepare import ensure_derived_data  # noqa: E402
from grporec.data.stream import SampleStream  # noqa: E402
from grporec.models.format import format_for  # noqa: E402
from grporec.models.tiny import build_tiny_for_data  # noqa: E402
from grporec.sft import IGNORE, build_sft_dataset, completion_loss_sum, micro_batches, pad_tokens, tokenize  # noqa: E402

MIXES = {"last_item": ["data.max_history=1", "sft.datasets=[sid_history,title2sid]"],  # the recipe's SFT stages
         "suffix": ["sft.datasets=[sid_history,sid_suffix,title2sid]"]}
SETTINGS = [(64, False), (16, False), (32, True), (16, True), (8, True)]  # (micro_batch_prompts, length-sorted)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/office-tiny-lastitem-bf16.yaml")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per setting (median reported)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    env = dist.DistEnv(0, 1, 0, torch.device("cpu"), False)
    result = {"config": args.config, "threads": args.threads, "mixes": {}}
    for mix, overrides in MIXES.items():
        cfg = load_config(args.config, overrides)
        ensure_derived_data(cfg)
        model, tok = build_tiny_for_data(cfg)
        model.train()
        fmt = format_for(tok, cfg.data.prompt_format, None, max_prompt_tokens=cfg.data.max_prompt_tokens)
        stream = SampleStream(build_sft_dataset(cfg, load_data_catalog(cfg.data)), 0)
        steps = [stream.take(cfg.sft.train.prompts_per_step) for _ in range(args.steps + 1)]
        rows = result["mixes"][mix] = {}
        for precision, train in (("fp32", TrainConfig()), ("bf16", TrainConfig(cpu_mixed_precision=True))):
            for size, by_length in SETTINGS:
                times, real, computed, loss_sums = [], 0, 0, []
                for k, samples in enumerate(steps):
                    model.zero_grad(set_to_none=True)
                    t0 = time.perf_counter()
                    encoded = [pad_tokens(part, fmt.pad_id, env.device) for part in micro_batches(tokenize(fmt, samples), size, by_length)]
                    total = 0.0
                    for ids, mask, labels in encoded:
                        with dist.autocast(env, train):  # fp32's TrainConfig() autocasts nothing on the CPU
                            loss, _ = completion_loss_sum(model, ids, mask, labels)
                        loss.backward()
                        total += loss.item()
                    if k:  # the first step warms up
                        times.append(time.perf_counter() - t0)
                    real += sum(int(m.sum()) for _, m, _ in encoded)
                    computed += sum(m.numel() for _, m, _ in encoded)
                    loss_sums.append(total / sum(int((lab != IGNORE).sum()) for _, _, lab in encoded))
                name = f"{precision} micro {size}" + (" sorted" if by_length else "")
                rows[name] = {"median_s": statistics.median(times), "real_token_share": real / computed, "mean_loss": loss_sums}
        base = rows["fp32 micro 64"]["median_s"]
        for name, r in rows.items():
            r["speedup_vs_fp32_micro64"] = base / r["median_s"]
            print(f"{mix:>9} {name:>22}: {r['median_s'] * 1e3:7.1f} ms a step, {r['speedup_vs_fp32_micro64']:.2f}x; "
                  f"real tokens {r['real_token_share']:.0%} of those computed; first step's loss {r['mean_loss'][0]:.5f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
