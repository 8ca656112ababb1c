"""Classical baselines, scored exactly like the generative models: `python -m grporec.baselines --config FILE`.

Two non-learned recommenders that every report should show beside the generative model, because
on small Amazon categories they are strong:
  - most-popular: the train split's most frequent target SIDs, the same list for every row;
  - first-order Markov: the SIDs that most often followed the row's last history SID in the train
    split, by count (ties and the rest of the list by popularity).
Both rank SIDs (a hit is SID equality, as for beam search) and are scored by the same
`grporec.evaluate.score` on the same rows, with the same K values, as the generative models.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from grporec.config import Config
from grporec.data.formats import Interaction
from grporec.data.load import load_data_catalog, load_split
from grporec.evaluate import eval_samples, format_metrics, score
from grporec.metrics import train_transitions, transition_counts

BASELINES = ("most_popular", "markov")


def popularity(train: Sequence[Interaction]) -> list[str]:
    """Target SIDs of the train rows by count, most frequent first (ties: first seen first)."""
    return [sid for sid, _ in Counter(r.item_sid for r in train).most_common()]


def most_popular(train: Sequence[Interaction], rows: Sequence[Interaction], k: int) -> list[list[str]]:
    """The same top-k popular SIDs for every row."""
    top = popularity(train)[:k]
    return [list(top) for _ in rows]


def successors_in_order(follows: Counter, pop_rank: dict[str, int]) -> list[str]:
    """The SIDs that followed an item, most often first, ties by popularity (`pop_rank`: SID ->
    place in `popularity(train)`): the first-order Markov chain's ranking."""
    return sorted(follows, key=lambda s: (-follows[s], pop_rank[s]))


def markov(train: Sequence[Interaction], rows: Sequence[Interaction], k: int) -> list[list[str]]:
    """Per row: the SIDs that followed its last history SID in train, most often first, then by
    popularity (a first-order Markov chain over SIDs, filled up with most-popular)."""
    pop = popularity(train)
    rank = {sid: i for i, sid in enumerate(pop)}
    follows = transition_counts(train)
    out = []
    for r in rows:
        counts = follows.get(r.history_sids[-1], Counter())
        ranked = successors_in_order(counts, rank)[:k]
        seen = set(ranked)
        for sid in pop:
            if len(ranked) >= k:
                break
            if sid not in seen:
                ranked.append(sid)
        out.append(ranked)
    return out


def evaluate_baselines(cfg: Config, split: str, k: int, max_rows: int = -1) -> dict[str, dict]:
    """{baseline: metrics (with per-row `ranks`)} on a split, each from a ranked list of k SIDs."""
    catalog = load_data_catalog(cfg.data)
    train = load_split(cfg.data, "train", catalog)
    rows = load_split(cfg.data, split, catalog)
    samples = eval_samples(cfg, rows)
    if max_rows > 0:
        rows, samples = rows[:max_rows], samples[:max_rows]
    make = {"most_popular": most_popular, "markov": markov}
    transitions = train_transitions(train)
    return {name: score(make[name](train, rows, k), samples, k, catalog, ks=tuple(cfg.eval.ks), transitions=transitions)
            for name in BASELINES}


def main(argv: list[str] | None = None, prog: str = "python -m grporec.baselines") -> int:
    from grporec import commandline as cli

    def body(args_list):
        ap = cli.config_parser(prog, "Most-popular and first-order Markov baselines, scored like the generative models.",
                               "python -m grporec.baselines --config configs/office-tiny.yaml --split test")
        ap.add_argument("--split", choices=["valid", "test"], default="test")
        ap.add_argument("--k", type=int, default=None, help="length of each ranked list (default: eval.test_beams)")
        ap.add_argument("--out", default=None, help="JSON file (default <output_dir>/baselines-<split>.json)")
        args, cfg = cli.parse_config(ap, args_list, Config)
        k = args.k or cfg.eval.test_beams
        if k < 1:
            raise cli.UsageError(f"--k must be at least 1, got {k}")
        results = evaluate_baselines(cfg, args.split, k, cfg.eval.max_rows)
        out = Path(args.out or Path(cfg.output_dir) / f"baselines-{args.split}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({name: {key: v for key, v in m.items() if key != "ranks"} for name, m in results.items()}, indent=2))
        for name, m in results.items():
            print(f"{name:13s} {format_metrics(m)}")
        print(f"[baselines] wrote {out}")

    return cli.run(body, argv)


if __name__ == "__main__":
    sys.exit(main())
