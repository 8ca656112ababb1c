"""Two rankers combined at decoding time: two models, or one model with two history lengths.

    python bench/experiments/prompt_ensemble.py --config configs/office-tiny.yaml --split valid \
        --a runs/exp/s1-mh1/best:1 --b runs/exp/s1-suffix/best:10 --out runs/exp/ens-valid.json \
        data.prompt_text=compact

Each ranker (`DIR:HISTORY`, the model directory and `data.max_history` for its prompts) gives its
`--beams` best catalog SIDs per row by constrained beam search; the union of the two lists is then
scored exactly under both (sequence log-probabilities, one teacher-forced forward per ranker), and
ranked by
  product:  w * log pA + (1 - w) * log pB        (a weighted product of experts), and
  mixture:  log(w * pA + (1 - w) * pB)           (a mixture),
for every weight w of `--weights` (w = 1 is A's own list re-scored, w = 0 B's). HR@K / NDCG@K on all
rows and on the seen / unseen buckets, as `grporec eval` reports them. Choose the weight on valid
and pass only that one for test. A decoding-time hybrid: its rows are reported as their own, not
as a trained policy's.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from grporec.config import Config, load_config  # noqa: E402
from grporec.data.load import load_data_catalog, load_split  # noqa: E402
from grporec.decode import beam_search, build_catalog_trie, left_pad  # noqa: E402
from grporec.evaluate import eval_samples, sample_seen, split_transitions  # noqa: E402
from grporec.blend import sequence_logps  # noqa: E402
from grporec.metrics import bucket_metrics, first_hit_rank, ranking_metrics  # noqa: E402
from grporec.models.format import format_for  # noqa: E402
from grporec.models.policy import load_policy  # noqa: E402

KS = (1, 5, 10, 20)


def parse_ranker(text: str) -> tuple[str, int]:
    path, sep, hist = text.rpartition(":")
    if not sep or not hist.isdigit() or int(hist) < 1:
        raise argparse.ArgumentTypeError(f"a ranker is DIR:HISTORY (e.g. runs/exp/s1-mh1/best:1), got {text!r}")
    return path, int(hist)


def union_candidates(rollouts, B: int, G: int) -> list[list[int]]:
    """Per prompt, the labels of both rankers' valid beams, A's first, without repeats."""
    out = []
    for b in range(B):
        seen: dict[int, None] = {}
        for r in rollouts:
            for lab in r.labels[b * G:(b + 1) * G].tolist():
                if lab >= 0:
                    seen.setdefault(lab, None)
        out.append(list(seen))
    return out


def combine(lpa: torch.Tensor, lpb: torch.Tensor, w: float, how: str) -> torch.Tensor:
    """Combined scores of the same candidates (padding stays -inf)."""
    if how == "product":
        out = w * lpa + (1 - w) * lpb
        return torch.where(torch.isfinite(lpa), out, float("-inf"))  # 0 * -inf would be nan
    if w in (0.0, 1.0):
        return lpa if w == 1.0 else lpb
    return torch.logaddexp(lpa + math.log(w), lpb + math.log(1 - w))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--a", required=True, type=parse_ranker, metavar="DIR:HISTORY")
    ap.add_argument("--b", required=True, type=parse_ranker, metavar="DIR:HISTORY")
    ap.add_argument("--split", choices=["valid", "test"], default="valid")
    ap.add_argument("--beams", type=int, default=20, help="beams per ranker; the combined list keeps this many")
    ap.add_argument("--weights", type=float, nargs="+", default=[1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.0])
    ap.add_argument("--combine", choices=["product", "mixture"], nargs="+", default=["product", "mixture"])
    ap.add_argument("--max-rows", type=int, default=-1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if any(not 0 <= w <= 1 for w in args.weights):
        ap.error(f"--weights must lie in [0, 1], got {args.weights}")
    cfg: Config = load_config(args.config, args.overrides)
    catalog = load_data_catalog(cfg.data)
    rows = load_split(cfg.data, args.split, catalog)
    rankers = []
    for path, hist in (args.a, args.b):
        model, tok = load_policy(path, cfg.model.dtype, "cpu", key="--a/--b")
        fmt = format_for(tok, cfg.data.prompt_format, path, key="--a/--b", max_prompt_tokens=cfg.data.max_prompt_tokens)
        samples = eval_samples(replace(cfg, data=replace(cfg.data, max_history=hist)), rows, args.max_rows)
        rankers.append((model.eval(), fmt, build_catalog_trie(fmt, catalog.sids), samples))
    samples = rankers[0][3]
    names = rankers[0][2].names
    seen = sample_seen(samples, split_transitions(cfg, catalog))
    G = args.beams
    t0 = time.perf_counter()
    scored: list[tuple[list[int], torch.Tensor, torch.Tensor]] = []  # per row: candidates, lpA, lpB
    for start in tqdm(range(0, len(samples), args.batch), desc="rows", unit="batch", disable=not sys.stderr.isatty()):
        batch = range(start, min(start + args.batch, len(samples)))
        prompts, rolls = [], []
        for model, fmt, trie, smp in rankers:
            ids, mask = left_pad([fmt.prompt_ids(smp[j].prompt) for j in batch], fmt.pad_id, "cpu")
            prompts.append((ids, mask))
            rolls.append(beam_search(model, ids, mask, trie, G))
        cands = union_candidates(rolls, len(batch), G)
        lps = [sequence_logps(m, ids, mask, trie, cands) for (m, _, trie, _), (ids, mask) in zip(rankers, prompts)]
        scored += [(c, lps[0][b], lps[1][b]) for b, c in enumerate(cands)]
    seconds = time.perf_counter() - t0
    results = []
    for how in args.combine:
        for w in args.weights:
            ranks = []
            for (c, lpa, lpb), s in zip(scored, samples):
                order = combine(lpa, lpb, w, how).argsort(descending=True)[:G].tolist()
                ranks.append(first_hit_rank([names[c[j]] for j in order if j < len(c)], s.target_sid))
            m = ranking_metrics(ranks, KS)
            m.update(bucket_metrics(ranks, seen, KS))
            results.append({"combine": how, "w": w, **m})
            print(f"{how:8s} w={w:.2f}  ndcg@10={m['ndcg@10']:.4f} hr@10={m['hr@10']:.4f} hr@20={m['hr@20']:.4f}  "
                  f"seen {m['seen']['ndcg@10']:.4f}  unseen {m['unseen']['ndcg@10']:.4f}", flush=True)
    out = {"split": args.split, "a": list(args.a), "b": list(args.b), "beams": G, "rows": len(samples),
           "seen_rows": sum(seen), "seconds": seconds, "overrides": args.overrides, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"{len(samples)} rows in {seconds:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
