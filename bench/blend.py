"""The blended recommender's prior strength `a`, chosen on valid, and its figures on test (issue 34).

    python bench/blend.py --config configs/office-tiny.yaml --model runs/office-tiny/last_item/best \
        --out bench/results/blend_office.json

Each split's candidates (the model's `--beams` beams and the last item's training successors) are
scored once, exactly (grporec.blend.score_candidates); then every `a` of `--grid` ranks them by
p = (c(last -> i) + a p_model(i)) / (c(last) + a). The extremes are the simple forms: a tiny `a`
puts the successors first by count (then the model), a huge one is the model's own order. The `a`
with the best valid NDCG@10 is applied to test; every row reports HR/NDCG at 10 and 20 and the
seen / unseen split, beside the model's plain beam search and the Markov baseline.

With `--sasrec DIR` (a trained SASRec), the prior is the product p_model^(1 - w) p_SASRec^w,
renormalised over the candidates (grporec.blend), and SASRec's top SIDs join the candidates; every
(a, w) of the two grids is scored on valid and the pair with the best NDCG@10 is applied to test
(`chosen`), beside the best w = 0 pair (`chosen_markov`: the model and the counts, over the same
candidates).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from grporec import commandline as cli  # noqa: E402
from grporec.baselines import evaluate_baselines  # noqa: E402
from grporec.blend import blend_rank, score_candidates  # noqa: E402
from grporec.config import BlendConfig, Config  # noqa: E402
from grporec.data.load import load_data_catalog, load_split  # noqa: E402
from grporec.decode import build_catalog_trie  # noqa: E402
from grporec.evaluate import eval_samples, score, split_transitions  # noqa: E402
from grporec.metrics import transition_counts  # noqa: E402
from grporec.models.format import format_for  # noqa: E402
from grporec.models.policy import load_policy, model_dir  # noqa: E402

GRID = BlendConfig().a_grid  # the blend stage's grids (grporec.blend_stage), so both choose alike
W_GRID = BlendConfig().w_grid  # SASRec's weight in the prior (with --sasrec)
KS = (10, 20)


def figures(m: dict) -> dict:
    out = {k: m[k] for k in ("ndcg@10", "hr@10", "hr@20")}
    out.update({f"ndcg@10_{p}": m[p]["ndcg@10"] for p in ("seen", "unseen") if p in m and m[p]["rows"]})
    return out


def main() -> int:
    ap = cli.config_parser("python bench/blend.py", __doc__.split("\n")[0], "python bench/blend.py --config configs/office-tiny.yaml "
                           "--model runs/office-tiny/last_item/best")
    ap.add_argument("--model", required=True)
    ap.add_argument("--beams", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--grid", type=float, nargs="+", default=GRID)
    ap.add_argument("--sasrec", default=None, metavar="DIR", help="a trained SASRec (grporec sasrec train) in the prior")
    ap.add_argument("--w-grid", type=float, nargs="+", default=W_GRID, help="SASRec's weights in the prior (with --sasrec)")
    ap.add_argument("--max-rows", type=int, default=None, help="the first N rows of each split (default eval.max_rows)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", required=True)
    ap.add_argument("--save-scores", default=None, metavar="FILE",
                    help="also save each split's scored candidates (torch.save), to try other forms offline")
    args, cfg = cli.parse_config(ap, sys.argv[1:], Config)
    args.model = str(model_dir(args.model, "--model"))
    cfg = cli.adopt_model_settings(cfg, args.model, "--model", args.overrides)
    cli.quiet_transformers()
    catalog = load_data_catalog(cfg.data)
    model, tok = load_policy(args.model, "float32", args.device, key="--model")
    fmt = format_for(tok, cfg.data.prompt_format, args.model, key="--model", max_prompt_tokens=cfg.data.max_prompt_tokens)
    trie = build_catalog_trie(fmt, catalog.sids, args.device)
    follows = transition_counts(load_split(cfg.data, "train", catalog))
    transitions = split_transitions(cfg, catalog)
    args.max_rows = cfg.eval.max_rows if args.max_rows is None else args.max_rows
    sasrec = None
    if args.sasrec:
        from grporec.models.sasrec import SASRec
        from grporec.rewards.cf import SasrecScorer

        sasrec = SasrecScorer(SASRec.load(args.sasrec, args.device), catalog)
    pairs = [(a, w) for w in (args.w_grid if sasrec else [0.0]) for a in args.grid]
    name = lambda a, w: f"blend a={a:g}" + (f" w={w:g}" if w else "")  # noqa: E731
    report = {"model": args.model, "sasrec": args.sasrec, "beams": args.beams, "grid": args.grid,
              "w_grid": args.w_grid if sasrec else [0.0], "overrides": args.overrides, "splits": {}}
    chosen = {}  # {key: (a, w)}, fixed on valid
    saved = {}  # {split: [one dict per row]} with --save-scores
    for split in ("valid", "test"):
        t0 = time.perf_counter()
        samples = eval_samples(cfg, load_split(cfg.data, split, catalog), args.max_rows)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.device.startswith("cuda")):  # as grporec eval on a GPU
            scored = score_candidates(model.eval(), fmt, trie, samples, follows, args.beams, args.batch, args.device, sasrec=sasrec)
        if args.save_scores:
            saved[split] = [{"labels": c.labels, "logp": c.logp, "counts": c.counts, "total": c.total, "sas_logp": c.sas_logp,
                             "target": s.target_sid, "last": s.history_sids[-1] if s.history_sids else None}
                            for c, s in zip(scored, samples)]
        todo = pairs if split == "valid" else sorted({*chosen.values(), *((a, 0.0) for a in args.grid)})  # test: what valid chose, and w = 0
        rows = {name(a, w): score(blend_rank(scored, trie.names, a, args.beams, w), samples, args.beams, catalog, KS, transitions)
                for a, w in todo}
        base = evaluate_baselines(cfg, split, args.beams, args.max_rows)["markov"]
        if not chosen:  # valid: the pair with the best NDCG@10, and the best without SASRec
            chosen = {"chosen": max(pairs, key=lambda p: rows[name(*p)]["ndcg@10"]),
                      "chosen_markov": max(((a, 0.0) for a in args.grid), key=lambda p: rows[name(*p)]["ndcg@10"])}
        report["splits"][split] = {"seconds": time.perf_counter() - t0, "chosen_a": chosen["chosen"][0], "chosen_w": chosen["chosen"][1],
                                   "markov": figures(base), "candidates_mean": sum(len(c.labels) for c in scored) / len(scored),
                                   **{key: {**figures(rows[name(*p)]), "a": p[0], "w": p[1], "ranks": rows[name(*p)]["ranks"]}
                                      for key, p in chosen.items()},  # per-row ranks, for paired differences
                                   **{n: figures(m) for n, m in rows.items()}}
        print(f"[blend] {split}: markov {base['ndcg@10']:.4f}; " + "; ".join(f"{n} {m['ndcg@10']:.4f}" for n, m in rows.items())
              + "; " + "; ".join(f"{k} a={p[0]:g} w={p[1]:g}" for k, p in chosen.items()), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    if args.save_scores:
        torch.save({"names": trie.names, "splits": saved}, args.save_scores)
    print(f"[blend] wrote {args.out}")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
