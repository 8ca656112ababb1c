"""How often a row's target is among its successor hints (data.successor_hints), per split: what a model trained on
hinted prompts learns to expect against what evaluation gives it.

    python bench/experiments/hint_coverage.py --config configs/office-tiny-hints.yaml --ks 3 5 10 --drops 0 0.5 0.75 \
        --out bench/results/hint_coverage_office.json

Training rows (the SFT `sid_history` prompts) read leave-one-out hints, and with `data.hint_drop` a seeded share
none of their own transition; valid and test rows read the full training counts. Pure counting, seconds.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from grporec.config import load_config  # noqa: E402
from grporec.data.hints import SuccessorHints  # noqa: E402
from grporec.data.load import load_data_catalog, load_split  # noqa: E402
from grporec.data.prepare import ensure_derived_data  # noqa: E402


def coverage(hints: SuccessorHints, rows, training: bool) -> float:
    """The share of rows whose target SID is one of their hints."""
    return sum(r.item_sid in hints.for_row(r, training) for r in rows) / len(rows)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--ks", type=int, nargs="+", default=[3, 5, 10])
    ap.add_argument("--drops", type=float, nargs="+", default=[0.0, 0.5, 0.75])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    ensure_derived_data(cfg)
    catalog = load_data_catalog(cfg.data)
    split = {s: load_split(cfg.data, s, catalog) for s in ("train", "valid", "test")}
    out = {"config": args.config, "seed": args.seed, "rows": {s: len(r) for s, r in split.items()}, "coverage": {}}
    for k in args.ks:
        full = SuccessorHints(split["train"], k)
        row = {"valid": coverage(full, split["valid"], False), "test": coverage(full, split["test"], False)}
        for p in args.drops:
            row[f"train, hint_drop={p:g}"] = coverage(SuccessorHints(split["train"], k, p, args.seed), split["train"], True)
        out["coverage"][f"K={k}"] = row
        print(f"K={k}: " + "  ".join(f"{name} {v:.3f}" for name, v in row.items()))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
