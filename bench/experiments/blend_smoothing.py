"""How should the blend smooth the last item's transition counts? Additive (what grporec ships) against
Pitman-Yor and Witten-Bell smoothing, offline on saved candidates (issue 34).

    python bench/blend.py ... --sasrec DIR --save-scores runs/scores_seed0.pt   # score the candidates once
    python bench/experiments/blend_smoothing.py runs/scores_seed0.pt [more files] --out bench/results/blend_smoothing_office.json

The shipped blend is additive smoothing, p = (c_i + a q_i) / (n + a), with q the product prior of the
generative model and SASRec (grporec.blend.blend_scores) and n = c(last). It gives the prior the same
weight a / (n + a) whether the last item was followed n times by one item or by n different ones. The
forms below let that weight grow with t, the number of distinct items that followed the last item (a
last item with many one-off successors predicts poorly by counts; one always followed by the same item
predicts well):
  - additive (d = 0 below): the shipped form;
  - pitman_yor: p = (max(c_i - d, 0) + (a + d t) q_i) / (n + a), the Pitman-Yor process's predictive
    probability (strength a, discount d in [0, 1)), the smoothing behind interpolated Kneser-Ney
    (Teh 2006); d = 0 is additive, a -> 0 interpolated absolute discounting;
  - witten_bell: p = (c_i + a t q_i) / (n + a t), the prior weighted by the last item's successor types
    (a = 1: Witten-Bell's estimate of an unseen continuation, t / (n + t)).
With no counts (n = 0) every form is the prior. Each form's settings are chosen on valid NDCG@10 per file
(the grid includes additive's, so a form is never worse on valid by construction: what decides is whether
its valid gain beats the paired noise, per file); test is scored at that choice. The candidates are ranked
as grporec.blend orders them (ties: the model's order, then the candidate order), all rows at once.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from grporec.metrics import paired_difference, row_ndcg  # noqa: E402

A_GRID = [1e-3, 0.1, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 1e6]
D_GRID = [0.0, 0.25, 0.5, 0.75, 0.9]
WB_GRID = [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0]
W_GRID = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
TOP = 20  # the blend's list length (its 20 beams): a target ranked past it is a miss


def padded(rows: list[dict], names: list[str]) -> dict:
    """The split's candidates as [R, N] tensors (pads: logp -inf, counts 0, `real` False) and each row's
    target column (-1: the target is not a candidate)."""
    R, N = len(rows), max(len(r["labels"]) for r in rows)
    out = {"logp": torch.full((R, N), float("-inf")), "sas": torch.full((R, N), float("-inf")), "counts": torch.zeros(R, N),
           "real": torch.zeros(R, N, dtype=torch.bool), "total": torch.tensor([r["total"] for r in rows]),
           "target": torch.full((R,), -1, dtype=torch.long)}
    for i, r in enumerate(rows):
        n = len(r["labels"])
        out["logp"][i, :n], out["sas"][i, :n], out["counts"][i, :n] = r["logp"], r["sas_logp"], r["counts"]
        out["real"][i, :n] = True
        hit = [j for j, lab in enumerate(r["labels"]) if names[lab] == r["target"]]
        out["target"][i] = hit[0] if hit else -1
    out["types"] = (out["counts"] > 0).sum(1).float()  # t: distinct successors of the last item (all are candidates)
    return out


def prior(s: dict, w: float) -> torch.Tensor:
    """q [R, N]: softmax over each row's candidates of (1 - w) logp_model + w logp_SASRec (grporec.blend's product;
    a weight of 0 drops its expert, as there)."""
    z = (s["logp"] * (1 - w) if w < 1 else 0) + (s["sas"] * w if w > 0 else 0)
    return torch.softmax(z.masked_fill(~s["real"], float("-inf")), 1)


def smoothed(form: str, s: dict, q: torch.Tensor, a: float, d: float) -> torch.Tensor:
    """p [R, N] of one form (module docstring); n = 0 rows get q itself."""
    c, n, t = s["counts"], s["total"][:, None], s["types"][:, None]
    if form == "witten_bell":
        p = (c + a * t * q) / (n + a * t).clamp_min(1e-30)  # t = 0 exactly where n = 0: replaced by q below
    else:
        p = ((c - d).clamp_min(0) + (a + d * t) * q) / (n + a)
    return torch.where(n > 0, p, q)


def target_ranks(s: dict, p: torch.Tensor) -> list[int]:
    """Each row's 0-based rank of its target in the blend's order (-1: not a candidate or past TOP): the
    candidates ahead of it score higher, or tie and have a higher model log-prob, or tie on both and come first."""
    col = s["target"].clamp_min(0)[:, None]
    pt, lt = p.gather(1, col), s["logp"].gather(1, col)
    idx = torch.arange(p.shape[1])[None, :]
    ahead = (p > pt) | ((p == pt) & ((s["logp"] > lt) | ((s["logp"] == lt) & (idx < col))))
    rank = (ahead & s["real"]).sum(1)
    return torch.where((s["target"] >= 0) & (rank < TOP), rank, torch.full_like(rank, -1)).tolist()


def settings(form: str) -> list[tuple[float, float, float]]:
    """(a, d, w) of a form's grid."""
    if form == "additive":
        return [(a, 0.0, w) for a in A_GRID for w in W_GRID]
    if form == "witten_bell":
        return [(a, 0.0, w) for a in WB_GRID for w in W_GRID]
    return [(a, d, w) for a in A_GRID for d in D_GRID for w in W_GRID]


def ndcg10(ranks: list[int]) -> float:
    return statistics.fmean(row_ndcg(ranks, 10))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scores", nargs="+", help="files of bench/blend.py --save-scores (one per model)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    report = {"files": args.scores, "a_grid": A_GRID, "d_grid": D_GRID, "wb_grid": WB_GRID, "w_grid": W_GRID, "per_file": []}
    for path in args.scores:
        saved = torch.load(path)
        splits = {split: padded(saved["splits"][split], saved["names"]) for split in ("valid", "test")}
        priors = {w: prior(splits["valid"], w) for w in W_GRID}
        entry, chosen = {"file": path}, {}
        for form in ("additive", "pitman_yor", "witten_bell"):
            grid = {(a, d, w): ndcg10(target_ranks(splits["valid"], smoothed(form, splits["valid"], priors[w], a, d)))
                    for a, d, w in settings(form)}
            a, d, w = max(grid, key=grid.get)
            ranks = {split: target_ranks(s, smoothed(form, s, prior(s, w), a, d)) for split, s in splits.items()}
            chosen[form] = ranks
            entry[form] = {"a": a, "d": d, "w": w, **{split: {"ndcg@10": ndcg10(r), "hr@10": statistics.fmean(0 <= x < 10 for x in r),
                                                            "hr@20": statistics.fmean(0 <= x < 20 for x in r)} for split, r in ranks.items()}}
        for form in ("pitman_yor", "witten_bell"):  # paired per user against the shipped form, each at its valid choice
            entry[f"{form} - additive"] = {split: dict(zip(("diff", "se"), paired_difference(chosen["additive"][split],
                                                                                             chosen[form][split], 10)))
                                           for split in ("valid", "test")}
        report["per_file"].append(entry)
        print(f"[blend-smoothing] {path}: " + "; ".join(
            f"{f} a={entry[f]['a']:g} d={entry[f]['d']:g} w={entry[f]['w']:g} valid {entry[f]['valid']['ndcg@10']:.4f} "
            f"test {entry[f]['test']['ndcg@10']:.4f}" for f in ("additive", "pitman_yor", "witten_bell")), flush=True)
    for form in ("additive", "pitman_yor", "witten_bell"):
        report[form] = {split: statistics.fmean(e[form][split]["ndcg@10"] for e in report["per_file"]) for split in ("valid", "test")}
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"[blend-smoothing] wrote {args.out}: " + "; ".join(f"{f} valid {report[f]['valid']:.4f} test {report[f]['test']:.4f}"
                                                               for f in ("additive", "pitman_yor", "witten_bell")))


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
