"""SASRec tuned like the generative recipe: settings chosen on valid, the chosen one's test figures over seeds.

    python bench/experiments/sasrec_tune.py --config configs/office-tiny.yaml --out bench/results/sasrec_tuned_office.json

A grid over hidden size, blocks, dropout, learning rate and weight decay (`--grid KEY=V1,V2 ...`
replaces the default), each trained with seed 0 and early-stopped on valid NDCG@10 as
`grporec sasrec` does; the setting with the best valid NDCG@10 (and, for comparison, the default
one) is then trained with every seed of `--seeds` and scored on test, all rows and the
seen/unseen-transition buckets. Never chosen on test.
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from grporec.config import load_config  # noqa: E402
from grporec.data.load import load_data_catalog, load_split  # noqa: E402
from grporec.metrics import train_transitions  # noqa: E402
from grporec.sasrec import evaluate_sasrec, train_sasrec  # noqa: E402

GRID = {"hidden": [64, 128], "blocks": [1, 2], "dropout": [0.2, 0.5], "lr": [1e-3], "weight_decay": [0.0, 0.1]}
CAST = {"hidden": int, "blocks": int, "heads": int, "max_len": int, "dropout": float, "lr": float, "weight_decay": float}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--grid", nargs="*", default=[], help="KEY=V1,V2 (keys of the sasrec section)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    ap.add_argument("overrides", nargs="*", help="config overrides, a.b=value")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    grid = dict(GRID)
    for item in args.grid:
        key, values = item.split("=", 1)
        if key not in CAST:
            raise SystemExit(f"--grid: unknown key {key!r}; choose from {sorted(CAST)}")
        grid[key] = [CAST[key](v) for v in values.split(",")]
    cfg = load_config(args.config, args.overrides)
    catalog = load_data_catalog(cfg.data)
    train, valid, test = (load_split(cfg.data, s, catalog) for s in ("train", "valid", "test"))
    transitions = train_transitions(train)
    report = {"config": args.config, "overrides": args.overrides, "grid": grid, "default": asdict(cfg.sasrec),
              "search": [], "seeds": args.seeds}

    def fit(setting, seed):
        t = time.perf_counter()
        model, info = train_sasrec(setting, catalog, train, valid, seed=seed, progress=False)
        v = evaluate_sasrec(model, catalog, valid, ks=(10,), transitions=transitions)
        return model, {"valid_ndcg@10": v["ndcg@10"], "valid_hr@10": v["hr@10"], "best_epoch": info["best_epoch"],
                       "seconds": time.perf_counter() - t}

    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        setting = replace(cfg.sasrec, **dict(zip(keys, values)))
        _, rec = fit(setting, args.seeds[0])
        report["search"].append({**dict(zip(keys, values)), **rec})
        print(f"[sasrec-tune] {dict(zip(keys, values))}: valid NDCG@10 {rec['valid_ndcg@10']:.4f} "
              f"(epoch {rec['best_epoch']}, {rec['seconds']:.0f} s)", flush=True)
    best = max(report["search"], key=lambda r: r["valid_ndcg@10"])
    report["chosen"] = {k: best[k] for k in keys}
    for name, setting in (("tuned", replace(cfg.sasrec, **report["chosen"])), ("default", cfg.sasrec)):
        runs = []
        for seed in args.seeds:
            model, rec = fit(setting, seed)
            rec["test"] = evaluate_sasrec(model, catalog, test, ks=tuple(cfg.eval.ks), transitions=transitions)
            runs.append(rec)
            t = rec["test"]
            print(f"[sasrec-tune] {name} seed {seed}: test NDCG@10 {t['ndcg@10']:.4f} HR@10 {t['hr@10']:.4f} "
                  f"(seen {t['seen']['ndcg@10']:.4f}, unseen {t['unseen']['ndcg@10']:.4f})", flush=True)
        mean = {k: statistics.mean(r["test"][k] for r in runs) for k in ("hr@10", "ndcg@10", "hr@20")}
        mean.update({f"{b}_{k}": statistics.mean(r["test"][b][k] for r in runs) for b in ("seen", "unseen")
                     for k in ("hr@10", "ndcg@10")})
        report[name] = {"runs": runs, "mean": mean}
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"[sasrec-tune] chosen on valid: {report['chosen']}; test mean " + ", ".join(
        f"{k} {v:.4f}" for k, v in report["tuned"]["mean"].items()) + f"; wrote {args.out}")


if __name__ == "__main__":
    main()
