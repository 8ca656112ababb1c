"""Which form of the three-model blend (generative model, SASRec, Markov counts) ranks best on valid?

    python bench/blend.py ... --sasrec DIR --save-scores runs/scores_seed0.pt   # score the candidates once
    python bench/experiments/blend_forms.py runs/scores_seed0.pt [more seeds' files] --out bench/results/blend_forms_office.json

Reads the scored candidates `bench/blend.py --save-scores` saved (each row's candidates with the
model's and SASRec's log-probabilities and the last item's transition counts) and ranks them by
each form over its grid, offline. Every form is p = (c(last -> i) + a q(i)) / (c(last) + a) with a
different prior q over the row's candidates:
  - product: q proportional to p_model^(1 - w) p_SASRec^w, renormalised over the candidates (a
    product of experts: both must find the item likely; grporec.blend.blend_scores, what grporec ships);
  - mixture: q = (1 - w) p_model + w p_SASRec;
  - rank: reciprocal-rank fusion of the two models' candidate orders, (1 - w) / (k + r_model) +
    w / (k + r_SASRec), k = 60, as a prior that ignores how peaked each model is.
Each form's (a, w) is chosen on valid NDCG@10 per file; test is scored at that choice.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from grporec.blend import best_first, blend_scores  # noqa: E402

A_GRID = [1e-3, 0.1, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 1e6]
W_GRID = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
RRF_K = 60.0


def scores(form: str, r: dict, a: float, w: float) -> torch.Tensor:
    """One row's blended scores over its candidates, [N]."""
    if form == "product":
        return blend_scores(r["logp"], r["counts"], r["total"], a, r["sas_logp"], w)
    if form == "mixture":
        q = (1 - w) * r["logp"].exp() + w * r["sas_logp"].exp()
    else:
        ranks = lambda x: torch.empty_like(x).scatter_(0, x.argsort(descending=True), torch.arange(len(x), dtype=x.dtype))  # noqa: E731
        q = (1 - w) / (RRF_K + ranks(r["logp"])) + w / (RRF_K + ranks(r["sas_logp"]))
    return (r["counts"] + a * q) / (r["total"] + a)


def ndcg10(rows: list[dict], names: list[str], form: str, a: float, w: float) -> list[float]:
    """Per-row NDCG@10 of the blend (0 where the target is not among the top 10 candidates)."""
    out = []
    for r in rows:
        top = best_first(scores(form, r, a, w), r["logp"])[:10]  # ordered as grporec.blend orders
        hit = [j for j, i in enumerate(top) if names[r["labels"][i]] == r["target"]]
        out.append(1 / math.log2(hit[0] + 2) if hit else 0.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scores", nargs="+", help="files of bench/blend.py --save-scores (one per seed)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    report = {"files": args.scores, "a_grid": A_GRID, "w_grid": W_GRID, "forms": {}}
    for form in ("product", "mixture", "rank"):
        per_file = []
        for path in args.scores:
            saved = torch.load(path)
            names, valid, test = saved["names"], saved["splits"]["valid"], saved["splits"]["test"]
            grid = {(a, w): statistics.fmean(ndcg10(valid, names, form, a, w)) for w in W_GRID for a in A_GRID}
            a, w = max(grid, key=grid.get)
            per_file.append({"a": a, "w": w, "valid": grid[(a, w)], "test": statistics.fmean(ndcg10(test, names, form, a, w))})
            print(f"[blend-forms] {form} {path}: a={a:g} w={w:g} valid {grid[(a, w)]:.4f} test {per_file[-1]['test']:.4f}", flush=True)
        report["forms"][form] = {"per_file": per_file, "valid_mean": statistics.fmean(f["valid"] for f in per_file),
                                 "test_mean": statistics.fmean(f["test"] for f in per_file)}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"[blend-forms] wrote {args.out}")


if __name__ == "__main__":
    main()
