"""Where a model gains or loses against the first-order Markov chain, by how often the row's last history item was
followed in training (its total successor count: what any recommender can see at prediction time, unlike whether
the target transition was trained). Each bucket's figure is its rows' NDCG@10 summed and divided by all the
split's rows, so a model's buckets add up to its NDCG@10 and the gaps say where a difference comes from.

    python bench/experiments/by_last_total.py --config configs/office-tiny-hints.yaml \
        --ranks hints=runs/office-tiny-hints/seeds/seed1/suffix/ranks.json sasrec=.../sasrec/ranks.json \
        --out bench/results/by_last_total_office.json

`--ranks NAME=PATH`: a recipe stage's `ranks.json` ({"valid": [...], "test": [...]}, each row's 0-based first-hit
rank or -1, the rows in the split's order), as `grporec recipe` and `bench/quality.py --recipe` write them.
`--predictions NAME:SPLIT=PATH`: a `grporec eval --out DIR` run's DIR/predictions.json of that split, instead.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from grporec.baselines import markov  # noqa: E402
from grporec.config import load_config  # noqa: E402
from grporec.data.load import load_data_catalog, load_split  # noqa: E402
from grporec.metrics import first_hit_rank, row_ndcg, transition_counts  # noqa: E402

BUCKETS = ((0, 0, "0"), (1, 1, "1"), (2, 3, "2-3"), (4, 9, "4-9"), (10, None, "10+"))


def bucket_of(total: int) -> str:
    return next(name for lo, hi, name in BUCKETS if total >= lo and (hi is None or total <= hi))


def contributions(totals: list[int], ranks: list[int], k: int = 10) -> dict[str, float]:
    """{bucket: sum of its rows' NDCG@k / all rows}; the values add up to the NDCG@k of `ranks`."""
    if len(totals) != len(ranks):
        raise ValueError(f"{len(ranks)} ranks for {len(totals)} rows")
    out = {name: 0.0 for _, _, name in BUCKETS}
    for t, v in zip(totals, row_ndcg(ranks, k)):
        out[bucket_of(t)] += v / len(ranks)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--ranks", nargs="+", default=[], metavar="NAME=PATH")
    ap.add_argument("--predictions", nargs="+", default=[], metavar="NAME:SPLIT=PATH")
    ap.add_argument("--splits", nargs="+", default=["valid", "test"])
    ap.add_argument("--out")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    catalog = load_data_catalog(cfg.data)
    train = load_split(cfg.data, "train", catalog)
    follows = transition_counts(train)
    named = {}
    for item in args.ranks:
        name, sep, path = item.partition("=")
        if not sep or not name:
            ap.error(f"--ranks takes NAME=PATH, got {item!r}")
        named[name] = json.loads(Path(path).read_text())
    for item in args.predictions:  # MiniOneRec-format records: the target in "output", the ranked SIDs in "predict"
        key, sep, path = item.partition("=")
        name, _, split = key.partition(":")
        if not sep or not name or split not in args.splits:
            ap.error(f"--predictions takes NAME:SPLIT=PATH with SPLIT one of {args.splits}, got {item!r}")
        records = json.loads(Path(path).read_text())
        named.setdefault(name, {})[split] = [first_hit_rank(r["predict"], r["output"].strip()) for r in records]
    report = {"config": args.config, "inputs": [*args.ranks, *args.predictions], "splits": {}}
    for split in args.splits:
        rows = load_split(cfg.data, split, catalog)
        totals = [sum(follows.get(r.history_sids[-1], Counter()).values()) if r.history_sids else 0 for r in rows]
        models = {"markov": [first_hit_rank(p, r.item_sid) for p, r in zip(markov(train, rows, 20), rows)]}
        for name, record in named.items():
            if split not in record:
                continue  # e.g. a model evaluated on test only
            if len(record[split]) != len(rows):
                raise SystemExit(f"{name}: {len(record[split])} {split} ranks for the {len(rows)} rows of {split}")
            models[name] = record[split]
        shares = Counter(bucket_of(t) for t in totals)
        part = {"rows": {b: shares[b] / len(rows) for _, _, b in BUCKETS},
                "ndcg@10": {name: contributions(totals, ranks) for name, ranks in models.items()}}
        report["splits"][split] = part
        print(f"{split}: " + "  ".join(f"{b} {part['rows'][b]:.2f}" for _, _, b in BUCKETS) + " (share of rows by last-item total)")
        for name, c in part["ndcg@10"].items():
            print(f"  {name:>14}: " + "  ".join(f"{b} {v:.4f}" for b, v in c.items()) + f"  = {sum(c.values()):.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
