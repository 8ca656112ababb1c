"""Is model B better than model A, seed by seed? Paired per-row differences of two sets of
`grporec eval` outputs (each an eval directory with predictions.json, one per seed, in seed order).

    python bench/experiments/paired_policy.py --split test \
        --a runs/office-tiny-teacher10/seeds/seed{0,1,2}/grpo_teacher10/eval-test \
        --b runs/exp34/seed{0,1,2}/T1/eval-test --out bench/results/x.json

A row's rank is the position of its target SID in the model's ranked list (-1: not in it), as
grporec.evaluate scores it; differences are B - A, with the paired standard error.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from grporec.metrics import first_hit_rank, paired_difference, paired_hr_difference, row_ndcg  # noqa: E402

DIFFS = (("ndcg@10", paired_difference, 10), ("hr@10", paired_hr_difference, 10), ("hr@20", paired_hr_difference, 20))


def ranks(eval_dir: str) -> tuple[list[str], list[int]]:
    """(each row's input, the target's rank in the prediction list or -1) of an eval directory."""
    rows = json.loads((Path(eval_dir) / "predictions.json").read_text())
    return [r["input"] for r in rows], [first_hit_rank(r["predict"], r["output"].strip()) for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", nargs="+", required=True, help="eval directories of model A, one per seed")
    ap.add_argument("--b", nargs="+", required=True, help="eval directories of model B, same seeds and order")
    ap.add_argument("--split", default="", help="a label for the output (valid or test)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if len(args.a) != len(args.b):
        sys.exit(f"--a has {len(args.a)} directories and --b {len(args.b)}: give one per seed to each")
    out = {"split": args.split, "a": args.a, "b": args.b, "seeds": []}
    for a_dir, b_dir in zip(args.a, args.b):
        (inputs_a, a), (inputs_b, b) = ranks(a_dir), ranks(b_dir)
        if inputs_a != inputs_b:
            sys.exit(f"{a_dir} and {b_dir} score different rows: pair only evaluations of the same split")
        seed = {"a_ndcg@10": statistics.fmean(row_ndcg(a, 10)), "b_ndcg@10": statistics.fmean(row_ndcg(b, 10)), "rows": len(a)}
        for name, fn, k in DIFFS:
            mean, se = fn(a, b, k)
            seed[f"diff_{name}"], seed[f"se_{name}"] = mean, se
        out["seeds"].append(seed)
    for key in ("a_ndcg@10", "b_ndcg@10", *(f"diff_{n}" for n, _, _ in DIFFS)):
        out[f"mean_{key}"] = statistics.fmean(s[key] for s in out["seeds"])
    out["relative_ndcg@10"] = out["mean_diff_ndcg@10"] / out["mean_a_ndcg@10"]
    for i, s in enumerate(out["seeds"]):
        print(f"seed {i}: A {s['a_ndcg@10']:.4f} B {s['b_ndcg@10']:.4f}  " + "  ".join(
            f"{n} {s[f'diff_{n}']:+.4f}±{s[f'se_{n}']:.4f}" for n, _, _ in DIFFS))
    print(f"mean: A {out['mean_a_ndcg@10']:.4f} B {out['mean_b_ndcg@10']:.4f} ({out['relative_ndcg@10']:+.1%})  "
          + "  ".join(f"{n} {out[f'mean_diff_{n}']:+.4f}" for n, _, _ in DIFFS))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
