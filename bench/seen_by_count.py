"""HR@K / NDCG@K of a model's saved predictions by how often each row's (last history SID -> target
SID) transition occurs in the training rows: unseen (0), once, twice, three times or more.

    python bench/seen_by_count.py --train runs/office-tiny/data/train.csv \
        --test ../shared/data/minionerec/Amazon/test/Office_Products_5_2016-10-2018-11.csv \
        --predictions runs/exp/eval-test/predictions.json [more predictions.json ...]

`grporec eval` reports the seen/unseen split; this refines the seen rows, because a model that
reproduces every frequent transition and half of the singletons (what the last-item SFT model
does on Office) needs repetition of the rare ones, not more generalisation. Reads the rows of
`--test` in the order `grporec eval` scored them (its `predictions.json`, `--max-rows` unused).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from grporec.data.formats import read_interactions  # noqa: E402
from grporec.metrics import first_hit_rank, ranking_metrics, transition_counts  # noqa: E402

BUCKETS = ("unseen", "once", "twice", "3+")


def bucket(count: int) -> str:
    return BUCKETS[min(count, 3)]


def by_count(counts: dict[str, Counter], rows, predictions: list[list[str]], k: int) -> dict[str, dict]:
    """{bucket: {rows, hr, ndcg}} at cut-off k (None for an empty bucket), from each row's first-hit
    rank, scored as every evaluator scores (`grporec.metrics`)."""
    ranks: dict[str, list[int]] = {b: [] for b in BUCKETS}
    for row, pred in zip(rows, predictions, strict=True):
        last = row.history_sids[-1] if row.history_sids else None
        ranks[bucket(counts.get(last, Counter())[row.item_sid] if last else 0)].append(first_hit_rank(pred, row.item_sid))
    out = {}
    for b, part in ranks.items():
        m = ranking_metrics(part, (k,)) if part else {}
        out[b] = {"rows": len(part), "hr": m.get(f"hr@{k}"), "ndcg": m.get(f"ndcg@{k}")}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", required=True, help="the training split the model was trained on (CSV)")
    ap.add_argument("--test", required=True, help="the split the predictions are of (CSV)")
    ap.add_argument("--predictions", nargs="+", required=True, help="grporec eval's predictions.json files")
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    counts = transition_counts(read_interactions(args.train))
    rows = read_interactions(args.test)
    print("| predictions | " + " | ".join(f"{b} HR@{args.k} / NDCG@{args.k}" for b in BUCKETS) + " |")
    print("|---|" + "---:|" * len(BUCKETS))
    sizes = None
    for path in args.predictions:
        preds = [p["predict"] for p in json.loads(Path(path).read_text())]
        if len(preds) != len(rows):
            raise SystemExit(f"{path}: {len(preds)} predictions for {len(rows)} rows of {args.test}")
        m = by_count(counts, rows, preds, args.k)
        sizes = {b: m[b]["rows"] for b in BUCKETS}
        print(f"| {path} | " + " | ".join("-" if m[b]["rows"] == 0 else f"{m[b]['hr']:.3f} / {m[b]['ndcg']:.4f}" for b in BUCKETS) + " |")
    print("rows per bucket: " + ", ".join(f"{b} {n}" for b, n in sizes.items()))


if __name__ == "__main__":
    main()
