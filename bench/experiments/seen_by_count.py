"""HR@K / NDCG@K of a model's saved predictions by how often each row's (last history SID -> target
SID) transition occurs in the training rows: unseen (0), once, twice, three times or more.

    python bench/experiments/seen_by_count.py --train runs/office-tiny/data/train.csv \
        --test ../shared/data/minionerec/Amazon/test/Office_Products_5_2016-10-2018-11.csv \
        --predictions runs/exp/eval-test/predictions.json [more predictions.json ...]

`grporec eval` reports the seen/unseen split; this refines the seen rows, because a model that
reproduces every frequent transition and half of the singletons (what the last-item SFT model
does on Office) needs repetition of the rare ones, not more generalisation. Reads the rows of
`--test` in the order `grporec eval` scored them (its `predictions.json`, `--max-rows` unused).

`--successors-first N` also scores each list re-ranked with its row's last item's N most frequent
training successors first (Markov's order), then the model's own list: the most a model's ranking
could gain from remembering the training transitions perfectly, at the price the slots in front
cost the rows whose target is not among them. A decoding-time hybrid, a diagnostic, not a model.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from grporec.baselines import popularity, successors_in_order  # noqa: E402
from grporec.data.formats import read_interactions  # noqa: E402
from grporec.metrics import first_hit_rank, ranking_metrics, transition_counts  # noqa: E402

BUCKETS = ("unseen", "once", "twice", "3+")


def bucket(count: int) -> str:
    return BUCKETS[min(count, 3)]


def by_count(counts: dict[str, Counter], rows, predictions: list[list[str]], k: int) -> dict[str, dict]:
    """{bucket: {rows, hr, ndcg}} at cut-off k (None for an empty bucket), and the same over "all"
    rows, from each row's first-hit rank, scored as every evaluator scores (`grporec.metrics`)."""
    ranks: dict[str, list[int]] = {b: [] for b in BUCKETS}
    for row, pred in zip(rows, predictions, strict=True):
        last = row.history_sids[-1] if row.history_sids else None
        ranks[bucket(counts.get(last, Counter())[row.item_sid] if last else 0)].append(first_hit_rank(pred, row.item_sid))
    ranks["all"] = [r for b in BUCKETS for r in ranks[b]]
    out = {}
    for b, part in ranks.items():
        m = ranking_metrics(part, (k,)) if part else {}
        out[b] = {"rows": len(part), "hr": m.get(f"hr@{k}"), "ndcg": m.get(f"ndcg@{k}")}
    return out


def successors_first(counts: dict[str, Counter], pop_rank: dict[str, int], rows, predictions, n: int) -> list[list[str]]:
    """Each list with its row's last item's n most frequent training successors in front (in the
    Markov baseline's order), then its own SIDs in their order, without repeats."""
    out = []
    for row, pred in zip(rows, predictions, strict=True):
        c = counts.get(row.history_sids[-1], Counter()) if row.history_sids else Counter()
        front = successors_in_order(c, pop_rank)[:n]
        out.append(front + [s for s in pred if s not in front])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", required=True, help="the training split the model was trained on (CSV)")
    ap.add_argument("--test", required=True, help="the split the predictions are of (CSV)")
    ap.add_argument("--predictions", nargs="+", required=True, help="grporec eval's predictions.json files")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--successors-first", type=int, nargs="*", default=[], metavar="N",
                    help="also score each list with the last item's N most frequent training successors in front")
    args = ap.parse_args()
    train = read_interactions(args.train)
    counts = transition_counts(train)
    pop_rank = {sid: i for i, sid in enumerate(popularity(train))}
    rows = read_interactions(args.test)
    print(f"| predictions | all HR@{args.k} / NDCG@{args.k} | " + " | ".join(f"{b}" for b in BUCKETS) + " |")
    print("|---|" + "---:|" * (1 + len(BUCKETS)))
    sizes = None
    for path in args.predictions:
        preds = [p["predict"] for p in json.loads(Path(path).read_text())]
        if len(preds) != len(rows):
            raise SystemExit(f"{path}: {len(preds)} predictions for {len(rows)} rows of {args.test}")
        for n in [None, *args.successors_first]:
            ranked = preds if n is None else successors_first(counts, pop_rank, rows, preds, n)
            m = by_count(counts, rows, ranked, args.k)
            sizes = {b: m[b]["rows"] for b in BUCKETS}
            name = path if n is None else f"{path}, {n} successors first"
            print(f"| {name} | {m['all']['hr']:.4f} / {m['all']['ndcg']:.4f} | "
                  + " | ".join("-" if m[b]["rows"] == 0 else f"{m[b]['hr']:.3f} / {m[b]['ndcg']:.4f}" for b in BUCKETS) + " |")
    print("rows per bucket: " + ", ".join(f"{b} {n}" for b, n in sizes.items()))


if __name__ == "__main__":
    main()
