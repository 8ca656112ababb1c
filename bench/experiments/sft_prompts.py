"""SFT throughput with MiniOneRec's prompts against the compact ones, in one run (not a test).

    python bench/experiments/sft_prompts.py --config configs/office-tiny.yaml --steps 40 --rounds 2

For each `data.prompt_text` (minionerec, compact), alternating over rounds so that both see the
same machine load: `--steps` SFT steps of the config's model and batch on the next-SID and
title -> SID tasks, from a fresh model; reports samples/s (median over the steps after the
first 5 of each round), prompt tokens per sample, and the ratio. Writes JSON (--out).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from grporec import dist  # noqa: E402
from grporec.config import load_config  # noqa: E402
from grporec.data.load import load_data_catalog  # noqa: E402
from grporec.sft import build_sft_dataset, train_sft  # noqa: E402

TEXTS = ("minionerec", "compact")


def run(cfg, text: str, steps: int, work: Path) -> tuple[list[float], float]:
    c = load_config(ARGS.config, ARGS.overrides + [f"data.prompt_text={text}", f"output_dir={work / text}",
                                                   f"sft.train.max_steps={steps}", "sft.train.eval_steps=0",
                                                   "sft.train.progress=false", "sft.train.resume=none"])
    summary = train_sft(c, dist.DistEnv(0, 1, 0, torch.device("cpu")))
    from grporec.models.policy import load_policy
    from grporec.models.format import build_format

    _, tok = load_policy(work / text / "best")
    fmt = build_format(tok)
    samples = build_sft_dataset(c, load_data_catalog(c.data)).samples[:500]
    tokens = statistics.mean(len(fmt.prompt_ids(s.prompt)) for s in samples)
    return [h["samples_per_s"] for h in summary["history"][5:]], tokens


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "office-tiny.yaml"))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sft_prompts_cpu.json"))
    ARGS, ARGS.overrides = ap.parse_known_args()
    from grporec.commandline import quiet_transformers

    quiet_transformers()
    ARGS.overrides = ARGS.overrides + ["sft.datasets=[sid_history,title2sid]"]
    cfg = load_config(ARGS.config, ARGS.overrides)
    rates, tokens = {t: [] for t in TEXTS}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(ARGS.rounds):
            for text in TEXTS:
                r, tokens[text] = run(dataclasses.replace(cfg), text, ARGS.steps, Path(tmp))
                rates[text] += r
    med = {t: statistics.median(rates[t]) for t in TEXTS}
    result = {"config": ARGS.config, "steps": ARGS.steps, "rounds": ARGS.rounds, "threads": torch.get_num_threads(),
              "samples_per_s": med, "prompt_tokens_per_sample": tokens, "speedup": med["compact"] / med["minionerec"]}
    Path(ARGS.out).write_text(json.dumps(result, indent=2))
    for t in TEXTS:
        print(f"{t:10s} {med[t]:7.1f} samples/s   {tokens[t]:6.1f} prompt tokens per sample")
    print(f"compact / minionerec: {result['speedup']:.2f}x   (wrote {ARGS.out})")


if __name__ == "__main__":
    main()
