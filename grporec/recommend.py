"""Ask a trained model for recommendations: `grporec recommend --config FILE --model DIR ...`.

    grporec recommend --config configs/office-tiny.yaml --model runs/office-tiny/sft/best \\
        --history B00004Z5CP "<a_12><b_3><c_200>" "Swingline Stapler" --k 10
    grporec recommend ... --input users.jsonl --json      # {"history": [...]} per line; "-" is stdin

Each history entry is an item id, an SID, or an item's title (exact, as in the catalog), oldest
first. The prompt is the evaluation's (`eval.prompt_style`, `data.prompt_text`,
`data.prompt_format`, `data.max_history`) and the decoder is the same constrained beam search over
the catalog's SID trie, so what is printed is what `grporec eval` scores: the top K SIDs with the
item(s) behind each (item id, title) and the sequence log-probability. Unknown or ambiguous
entries are an error naming every one of them, before the model is loaded.
"""
from __future__ import annotations

import json
import sys

import torch

from grporec.config import Config
from grporec.data.catalog import Catalog
from grporec.data.formats import Interaction
from grporec.errors import UserError


class HistoryError(UserError):
    """A history entry that names no catalog item, or more than one."""


def ids_by_title(catalog: Catalog) -> dict[str, list[str]]:
    """Title -> the ids of the items that carry it (built once for all histories)."""
    by_title: dict[str, list[str]] = {}
    for it in catalog.items:
        by_title.setdefault(it.title, []).append(it.item_id)
    return by_title


def resolve_history(entries: list[str], catalog: Catalog, where: str, by_title: dict[str, list[str]]) -> list[str]:
    """The item ids of a history's entries (item id, SID or exact title), or a HistoryError naming
    every entry that names no item or, for a title shared by several items, more than one."""
    ids, bad = [], []
    for e in entries:
        e = str(e)
        if e in catalog.index_of_id:
            ids.append(e)
        elif e in catalog.ids_of_sid:
            ids.append(catalog.ids_of_sid[e][0])  # items of one SID are one recommendation
        elif len(by_title.get(e, [])) == 1:
            ids.append(by_title[e][0])
        elif e in by_title:
            bad.append(f"{e!r} is the title of {len(by_title[e])} items ({', '.join(by_title[e][:4])}): give the item id")
        else:
            bad.append(f"{e!r} is not an item id, SID or title of the catalog")
    if bad:
        raise HistoryError(f"{where}: " + "; ".join(bad))
    return ids


def read_histories(args, catalog: Catalog) -> list[list[str]]:
    """Histories from --history, or one JSON object {"history": [...]} per line of --input."""
    by_title = ids_by_title(catalog)
    if args.history:
        return [resolve_history(args.history, catalog, "--history", by_title)]
    stream = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")
    name = "<stdin>" if args.input == "-" else args.input
    out = []
    with stream:
        for n, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                history = record["history"]
            except (ValueError, KeyError, TypeError):
                raise HistoryError(f"{name}, line {n}: expected a JSON object {{\"history\": [...]}}") from None
            if not isinstance(history, list) or not history:
                raise HistoryError(f"{name}, line {n}: \"history\" must be a non-empty list")
            out.append(resolve_history(history, catalog, f"{name}, line {n}", by_title))
    if not out:
        raise HistoryError(f"{name}: no histories")
    return out


def item_record(catalog: Catalog, rank: int, sid: str, score: float) -> dict:
    items = catalog.ids_of_sid[sid]
    return {"rank": rank, "sid": sid, "item_id": items[0], "title": catalog.title(items[0]), "score": score,
            "items_with_sid": items}


@torch.no_grad()
def recommend(model, fmt, trie, catalog: Catalog, cfg: Config, histories: list[list[str]], k: int,
              blend=None) -> list[list[dict]]:
    """The top-k recommendations of each history (item ids, oldest first), best first.

    `blend` (a `grporec.blend.Blend`): rank by the blended recommender; a record's score is then the
    blended probability, and candidates are `cfg.eval.test_beams` beams (at least k) plus the last
    item's successors (and SASRec's top SIDs with a SASRec), as `grporec eval --blend-a` ranks them.
    Otherwise: k beams, scored by log-probability."""
    from grporec.decode import beam_search, left_pad
    from grporec.evaluate import eval_samples

    rows = [Interaction(f"user{u}", tuple(catalog.title(i) for i in h), tuple(h), tuple(catalog.sid(i) for i in h), "", "", "")
            for u, h in enumerate(histories)]
    samples = eval_samples(cfg, rows)
    device = next(model.parameters()).device
    if blend is not None:
        from grporec.blend import blend_order, score_candidates

        scored = score_candidates(model, fmt, trie, samples, blend.follows, max(k, cfg.eval.test_beams), cfg.eval.batch_prompts,
                                  device, sasrec=blend.sasrec)
        out = []
        for c in scored:
            order, p = blend_order(c, blend.a, blend.w)
            out.append([item_record(catalog, rank + 1, trie.names[c.labels[i]], float(p[i])) for rank, i in enumerate(order[:k])])
        return out
    out = []
    for start in range(0, len(samples), cfg.eval.batch_prompts):
        part = samples[start:start + cfg.eval.batch_prompts]
        ids, mask = left_pad([fmt.prompt_ids(s.prompt) for s in part], fmt.pad_id, device)
        r = beam_search(model, ids, mask, trie, k)
        scores = r.scores.tolist()
        for b in range(len(part)):
            recs = []
            for rank in range(k):
                j = b * k + rank
                sid = r.sids[j]
                if sid is None:  # fewer catalog completions than k
                    continue
                recs.append(item_record(catalog, rank + 1, sid, scores[j]))
            out.append(recs)
    return out


def print_table(history_titles: list[str], recs: list[dict], file=None) -> None:
    file = file or sys.stdout
    print("history: " + " -> ".join(history_titles), file=file)
    width = max((len(r["sid"]) for r in recs), default=3)
    print(f"{'rank':>4}  {'score':>8}  {'SID':<{width}}  {'item id':<12}  title", file=file)
    for r in recs:
        more = f" (+{len(r['items_with_sid']) - 1} more with this SID)" if len(r["items_with_sid"]) > 1 else ""
        print(f"{r['rank']:>4}  {r['score']:>8.3f}  {r['sid']:<{width}}  {r['item_id']:<12}  {r['title']}{more}", file=file)


def main(argv: list[str] | None = None, prog: str = "python -m grporec.recommend") -> int:
    from grporec import commandline as cli

    def body(args_list):
        ap = cli.config_parser(prog, "Top-K recommendations of a trained model for one or more user histories.",
                               "grporec recommend --config configs/office-tiny.yaml --model runs/office-tiny/sft/best "
                               "--history B00004Z5CP B0006HUTA0 --k 10")
        ap.add_argument("--model", default=None, help="HF model directory (an SFT model, or a GRPO checkpoint's policy/); "
                                                       "required unless --blend names it")
        ap.add_argument("--history", nargs="+", metavar="ITEM", help="one history, oldest first: item ids, SIDs or titles")
        ap.add_argument("--input", metavar="FILE", help='JSON lines {"history": [...]}, one user each ("-": stdin)')
        ap.add_argument("--k", type=int, default=10, help="recommendations per history (beams; default 10)")
        ap.add_argument("--json", action="store_true", help="print JSON lines (one per history) instead of tables")
        cli.add_blend_arguments(ap)  # scores are then the blended probabilities
        args, cfg = cli.parse_config(ap, args_list, Config)
        if (args.history is None) == (args.input is None):
            raise cli.UsageError("give exactly one of --history ITEM ... and --input FILE")
        if args.k < 1:
            raise cli.UsageError(f"--k must be at least 1, got {args.k}")
        cli.check_blend_arguments(args)
        from grporec.data.load import load_data_catalog

        catalog = load_data_catalog(cfg.data)
        histories = read_histories(args, catalog)  # every entry checked before the model is loaded
        from grporec.models.policy import model_dir

        args.model = str(model_dir(args.model, "--model"))  # a GRPO checkpoint's directory means its policy/
        cfg = cli.adopt_model_settings(cfg, args.model, "--model", args.overrides)
        cli.quiet_transformers()
        from grporec.decode import build_catalog_trie
        from grporec.models.format import format_for
        from grporec.models.policy import load_policy
        from grporec.models.tokenizer import check_sid_tokenizer

        device = "cuda" if torch.cuda.is_available() else "cpu"
        model, tokenizer = load_policy(args.model, cfg.model.dtype, device, key="--model")
        check_sid_tokenizer(tokenizer, catalog.sids, source=args.model)
        fmt = format_for(tokenizer, cfg.data.prompt_format, args.model, key="--model", max_prompt_tokens=cfg.data.max_prompt_tokens)
        trie = build_catalog_trie(fmt, catalog.sids, device)
        blend = cli.blend_settings(args, cfg, catalog, device)
        results = recommend(model.eval(), fmt, trie, catalog, cfg, histories, args.k, blend)
        for h, recs in zip(histories, results):
            if args.json:
                print(json.dumps({"history": h, "recommendations": recs}))
            else:
                print_table([catalog.title(i) for i in h], recs)
                print()

    return cli.run(body, argv)


if __name__ == "__main__":
    sys.exit(main())
