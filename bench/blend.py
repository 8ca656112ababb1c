"""The blended recommender's prior strength `a`, chosen on valid, and its figures on test (issue 34).

    python bench/blend.py --config configs/office-tiny.yaml --model runs/office-tiny/last_item/best \
        --out bench/results/blend_office.json

Each split's candidates (the model's `--beams` beams and the last item's training successors) are
scored once, exactly (grporec.blend.score_candidates); then every `a` of `--grid` ranks them by
p = (c(last -> i) + a p_model(i)) / (c(last) + a). The extremes are the simple forms: a tiny `a`
puts the successors first by count (then the model), a huge one is the model's own order. The `a`
with the best valid NDCG@10 is applied to test; every row reports HR/NDCG at 10 and 20 and the
seen / unseen split, beside the model's plain beam search and the Markov baseline.
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
from grporec.config import Config  # noqa: E402
from grporec.data.load import load_data_catalog, load_split  # noqa: E402
from grporec.decode import build_catalog_trie  # noqa: E402
from grporec.evaluate import eval_samples, score, split_transitions  # noqa: E402
from grporec.metrics import transition_counts  # noqa: E402
from grporec.models.format import format_for  # noqa: E402
from grporec.models.policy import load_policy, model_dir  # noqa: E402

GRID = [1e-3, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 1e3, 1e6]
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
    ap.add_argument("--max-rows", type=int, default=None, help="the first N rows of each split (default eval.max_rows)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", required=True)
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
    report = {"model": args.model, "beams": args.beams, "grid": args.grid, "overrides": args.overrides, "splits": {}}
    chosen = None
    for split in ("valid", "test"):
        t0 = time.perf_counter()
        samples = eval_samples(cfg, load_split(cfg.data, split, catalog), args.max_rows)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.device.startswith("cuda")):  # as grporec eval on a GPU
            scored = score_candidates(model.eval(), fmt, trie, samples, follows, args.beams, args.batch, args.device)
        rows = {f"blend a={a:g}": score(blend_rank(scored, trie.names, a, args.beams), samples, args.beams, catalog, KS, transitions)
                for a in args.grid}
        base = evaluate_baselines(cfg, split, args.beams, args.max_rows)["markov"]
        if chosen is None:  # valid: the a with the best NDCG@10
            chosen = max(args.grid, key=lambda a: rows[f"blend a={a:g}"]["ndcg@10"])
        best = rows[f"blend a={chosen:g}"]
        report["splits"][split] = {"seconds": time.perf_counter() - t0, "chosen_a": chosen, "markov": figures(base),
                                   "candidates_mean": sum(len(c.labels) for c in scored) / len(scored),
                                   "chosen": {**figures(best), "ranks": best["ranks"]},  # per row, for paired differences
                                   **{name: figures(m) for name, m in rows.items()}}
        print(f"[blend] {split}: markov {base['ndcg@10']:.4f}; " + "; ".join(f"{n} {m['ndcg@10']:.4f}" for n, m in rows.items())
              + f"; chosen a={chosen:g}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"[blend] wrote {args.out}")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
