"""How good a ranker is the `teacher` reward's distribution, and at which `reward.teacher_a`?

    python bench/experiments/teacher_a.py --config configs/office-tiny.yaml --sasrec DIR --out FILE

The teacher is the Markov counts smoothed with SASRec (grporec.rewards.cf.CountsSasrecTeacher). Each
a of the grid ranks every SID by the teacher's probability on valid and test (choose on valid);
NDCG@10 overall and on the rows whose last-item -> target transition was (seen) or was not trained.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from grporec.config import load_config  # noqa: E402
from grporec.data.load import load_data_catalog, load_split  # noqa: E402
from grporec.metrics import bucket_metrics, ranking_metrics, seen_flags, train_transitions  # noqa: E402
from grporec.models.sasrec import SASRec  # noqa: E402
from grporec.rewards.cf import CountsSasrecTeacher, SasrecScorer  # noqa: E402


def teacher_ranks(teacher: CountsSasrecTeacher, rows, batch: int = 512) -> list[int]:
    """0-based rank of each row's target SID under the teacher (ties counted in its favour, as SASRec's)."""
    ranks = []
    for i in range(0, len(rows), batch):
        part = rows[i:i + batch]
        p = teacher.sid_probs([tuple(r.history_sids) for r in part])
        t = p.gather(1, torch.tensor([[teacher.scorer.sid_index[r.item_sid]] for r in part]))
        ranks += (p > t).sum(1).tolist()
    return ranks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "office-tiny.yaml"))
    ap.add_argument("--sasrec", required=True, help="a trained SASRec directory")
    ap.add_argument("--grid", nargs="+", type=float, default=[0.1, 0.3, 1, 3, 10, 30, 100, 1e6])
    ap.add_argument("--out", default=None)
    args, overrides = ap.parse_known_args()
    cfg = load_config(args.config, overrides)
    catalog = load_data_catalog(cfg.data)
    train = load_split(cfg.data, "train", catalog)
    scorer = SasrecScorer(SASRec.load(args.sasrec), catalog)
    transitions = train_transitions(train)
    out = {}
    for split in ("valid", "test"):
        rows = [r for r in load_split(cfg.data, split, catalog) if r.history_sids]
        seen = seen_flags([(r.history_sids[-1], r.item_sid) for r in rows], transitions)
        for a in args.grid:
            ranks = teacher_ranks(CountsSasrecTeacher(scorer, train, a), rows)
            m = {**ranking_metrics(ranks, (10, 20)), **bucket_metrics(ranks, seen, (10,))}
            out.setdefault(split, {})[str(a)] = {"ndcg@10": m["ndcg@10"], "hr@10": m["hr@10"],
                                                 "ndcg@10_seen": m["seen"]["ndcg@10"], "ndcg@10_unseen": m["unseen"]["ndcg@10"]}
            print(f"{split} a={a:g}: " + " ".join(f"{k} {v:.4f}" for k, v in out[split][str(a)].items()), flush=True)
    best = max(args.grid, key=lambda a: out["valid"][str(a)]["ndcg@10"])
    out["chosen_a"] = best
    print(f"chosen on valid: a = {best:g}")
    if args.out:
        Path(args.out).write_text(json.dumps({"config": args.config, "sasrec": args.sasrec, **out}, indent=1))


if __name__ == "__main__":
    main()
