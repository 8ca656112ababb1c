"""Evaluation by constrained beam search over the whole catalog, MiniOneRec-compatible.

    python -m grporec.evaluate --config FILE --model DIR --split test --beams 50
    torchrun --nproc_per_node=N -m grporec.evaluate ...   (rows sharded, metrics combined)

Each row's prompt is `EvalSidDataset`'s (or the SFT wording with eval.prompt_style=sft); the model's `beams` best catalog completions are its
ranked predictions. HR@K and NDCG@K (K from eval.ks or --ks, at most the beam count) use the
rank of the first exact SID match, NDCG = 1/log2(rank + 2), averaged over all rows. Writes
`metrics.json` and `predictions.json` (one record per row with `input`, `output` and `predict`,
the generated SIDs in rank order, as MiniOneRec's scoring scripts read them).
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from grporec import dist
from grporec.config import Config
from grporec.data.datasets import EvalSidDataset, Sample, SftSidDataset
from grporec.data.load import load_data_catalog, load_split, successor_hints
from grporec.decode import beam_search, build_catalog_trie, left_pad
from grporec.metrics import DEFAULT_KS, bucket_metrics, first_hit_rank, ranking_metrics, seen_flags, train_transitions

_INPUT_START, _INPUT_END = "### User Input: \n", "\n\n### Response:\n"


def prompt_input(prompt: str) -> str:
    """The user-input part of a prompt (what MiniOneRec's records call `input`)."""
    start = prompt.find(_INPUT_START)
    end = prompt.rfind(_INPUT_END)
    return prompt[start + len(_INPUT_START):end] if start >= 0 and end > start else prompt


def eval_samples(cfg: Config, rows, max_rows: int = -1) -> list[Sample]:
    """Evaluation prompts for rows, in the configured wording (`eval.prompt_style`)."""
    cls = EvalSidDataset if cfg.eval.prompt_style == "eval" else SftSidDataset
    # the full training counts (no row left out)
    hints = successor_hints(cfg.data, load_data_catalog(cfg.data), cfg.seed) if cfg.data.successor_hints else None
    samples = cls(rows, cfg.data.max_history, cfg.data.prompt_text == "compact", hints).samples  # compact: one wording for both
    return samples[:max_rows] if max_rows and max_rows > 0 else samples


@torch.no_grad()
def predict(model, fmt, trie, samples: list[Sample], beams: int, batch_prompts: int, env: dist.DistEnv,
            progress: bool = False, keep: int | None = None) -> list[list[str | None]]:
    """Ranked SID predictions for every sample (on every rank), rows sharded over ranks; the first
    `keep` of each ranked list (all `beams` by default).

    With `beams` >= the trie's number of labels every prefix survives every level, so the list is
    the exact ranking of the whole catalog by sequence log-probability (`exact_beams`).

    Every rank runs the same number of batches (the last shard is padded with repeats whose
    results are dropped), because FSDP forwards are collective.
    """
    was_training = model.training
    model.eval()
    per_rank = math.ceil(len(samples) / env.world_size)
    mine = list(range(env.rank * per_rank, min(len(samples), (env.rank + 1) * per_rank)))
    padded = mine + [mine[-1] if mine else 0] * (per_rank - len(mine))
    out: dict[int, list] = {}
    bar = tqdm(total=len(samples), desc="evaluate", unit="rows", disable=not (progress and env.is_main), dynamic_ncols=True)
    for i in range(0, per_rank, batch_prompts):
        idx = padded[i:i + batch_prompts]
        ids, mask = left_pad([fmt.prompt_ids(samples[j].prompt) for j in idx], fmt.pad_id, env.device)
        r = beam_search(model, ids, mask, trie, beams)
        for k, j in enumerate(idx[: max(0, len(mine) - i)]):
            out[j] = r.sids[k * beams:(k + 1) * beams][:keep]
        bar.update(min(len(idx), max(0, len(mine) - i)) * env.world_size)
    bar.close()
    model.train(was_training)
    merged = {}
    for part in dist.gather_objects(out, env):
        merged.update(part)
    return [merged[j] for j in range(len(samples))]


def score(predictions: list[list[str | None]], samples: list[Sample], beams: int, catalog=None,
          ks=DEFAULT_KS, transitions: set | None = None) -> dict:
    """HR@K / NDCG@K (K <= beams), invalid outputs, and how many targets are collided SIDs; with the
    training split's `transitions` (`metrics.train_transitions`), the same on the seen and unseen rows."""
    ranks = [first_hit_rank(p, s.target_sid) for p, s in zip(predictions, samples)]
    ks = [k for k in ks if k <= beams]
    metrics = ranking_metrics(ranks, ks)
    if transitions is not None:
        metrics.update(bucket_metrics(ranks, sample_seen(samples, transitions), ks))
    metrics["ranks"] = ranks
    metrics["rows"] = len(samples)
    metrics["invalid_outputs"] = sum(1 for p in predictions for x in p if x is None or (catalog is not None and not catalog.has_sid(x)))
    if catalog is not None:
        metrics["targets_with_collided_sid"] = sum(1 for s in samples if len(catalog.ids_of_sid.get(s.target_sid, [])) > 1)
    return metrics


def sample_seen(samples: list[Sample], transitions: set) -> list[bool]:
    """Per sample, whether its (last history SID, target) transition occurs in the training rows."""
    return seen_flags([(s.history_sids[-1] if s.history_sids else None, s.target_sid) for s in samples], transitions)


def split_transitions(cfg: Config, catalog) -> set:
    """The training split's transitions, against which rows are bucketed as seen / unseen."""
    return train_transitions(load_split(cfg.data, "train", catalog))


def exact_beams(trie) -> int:
    """The beam width that ranks the whole catalog exactly: one beam per SID in the trie (a prefix
    never has more completions than that, so none is ever dropped)."""
    return trie.num_labels


def evaluate(model, fmt, trie, samples, beams, batch_prompts, env, catalog=None, ks=DEFAULT_KS, progress=False,
             transitions=None, keep: int | None = None):
    """(metrics, predictions) on every rank; `fmt` is the prompt format (`grporec.models.format`);
    predictions keep the first `keep` of each ranked list (all `beams` by default)."""
    preds = predict(model, fmt, trie, samples, beams, batch_prompts, env, progress, keep)
    return score(preds, samples, beams, catalog, ks, transitions), preds


def evaluate_model(cfg: Config, model_dir: str | Path, split: str, env, out: Path | None = None) -> dict:
    """Metrics (with per-row `ranks`) of an HF model directory on a split, by `cfg.eval`'s beams and
    batches; with `out`, metrics.json and MiniOneRec-format predictions.json written there."""
    from grporec.models.format import format_for
    from grporec.models.policy import load_policy

    catalog = load_data_catalog(cfg.data)
    samples = eval_samples(cfg, load_split(cfg.data, split, catalog), cfg.eval.max_rows)
    model, tokenizer = load_policy(model_dir, "float32", env.device)
    fmt = format_for(tokenizer, cfg.data.prompt_format, model_dir, max_prompt_tokens=cfg.data.max_prompt_tokens)
    trie = build_catalog_trie(fmt, catalog.sids, env.device)
    metrics, preds = evaluate(model, fmt, trie, samples, cfg.eval.test_beams, cfg.eval.batch_prompts, env, catalog,
                              ks=tuple(cfg.eval.ks), transitions=split_transitions(cfg, catalog))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_outputs(out, metrics, preds, samples, {"model": str(model_dir), "split": split, "beams": cfg.eval.test_beams,
                                                      "prompt_style": cfg.eval.prompt_style, "prompt_format": fmt.name})
    return metrics


def main(argv: list[str] | None = None, prog: str = "python -m grporec.evaluate") -> int:
    from grporec import commandline as cli
    from grporec.blend_stage import read_blend

    def body(args_list):
        ap = cli.config_parser(prog, "Evaluate a model by constrained beam search: HR@K / NDCG@K, MiniOneRec-format predictions.",
                               "python -m grporec.evaluate --config configs/office-tiny.yaml --model runs/office-tiny/sft/best --split test")
        ap.add_argument("--model", default=None, help="HF model directory (an SFT model, or a GRPO checkpoint's policy/); "
                                                       "required unless --blend names it")
        ap.add_argument("--split", choices=["valid", "test"], default="test")
        ap.add_argument("--beams", type=int, default=None,
                        help="beams = length of each ranked list (default 50; with --blend, the beams it was fitted with)")
        ap.add_argument("--exact", action="store_true",
                        help="rank the whole catalog by exact sequence log-probability (one beam per SID: no beam-search "
                             "error; costs about catalog-size beams, minutes per 100 rows on a CPU); lists keep max(--ks)")
        cli.add_blend_arguments(ap)
        ap.add_argument("--batch", type=int, default=None, help="prompts per decode batch (default eval.batch_prompts)")
        ap.add_argument("--max-rows", type=int, default=None, help="only the first N rows (default eval.max_rows; -1: all)")
        ap.add_argument("--ks", type=int, nargs="+", default=None, metavar="K",
                        help="cut-offs of HR@K / NDCG@K (default eval.ks; those above --beams are left out)")
        ap.add_argument("--out", default=None, help="output directory (default <output_dir>/eval-<split>)")
        args, cfg = cli.parse_config(ap, args_list, Config)
        max_rows = cfg.eval.max_rows if args.max_rows is None else args.max_rows
        batch = args.batch or cfg.eval.batch_prompts
        args.ks = args.ks or cfg.eval.ks
        cli.check_blend_arguments(args)
        if args.beams is None:  # 0 is a usage error below, not the default
            args.beams = read_blend(args.blend)["beams"] if args.blend else 50
        if min(args.ks) < 1:
            raise cli.UsageError(f"--ks / eval.ks must be positive cut-offs, got {args.ks}")
        if args.beams < 1:
            raise cli.UsageError(f"--beams must be at least 1, got {args.beams}")
        if max_rows == 0 or max_rows < -1:
            raise cli.UsageError(f"--max-rows / eval.max_rows must be a positive number of rows or -1 (all), got {max_rows}")
        if batch < 1:
            raise cli.UsageError(f"--batch / eval.batch_prompts must be at least 1, got {batch}")
        if args.blend_a is not None and args.exact:
            raise cli.UsageError("--blend-a ranks beams and the last item's successors: not with --exact")
        cli.quiet_transformers()
        out = Path(args.out or Path(cfg.output_dir) / f"eval-{args.split}")
        env = dist.setup()

        def work():
            if env.is_main:  # find out now, not after the evaluation, whether the results can be written
                ensure_writable(out)
            from grporec.models.policy import model_dir

            args.model = str(model_dir(args.model, "--model"))  # a GRPO checkpoint's directory means its policy/
            run_evaluation(cli.adopt_model_settings(cfg, args.model, "--model", args.overrides), args, env, out, max_rows, batch)

        cli.run_ranked(env, work)  # a failure on any rank ends every rank

    return cli.run(body, argv)


def ensure_writable(out: Path) -> None:
    """Create `out` and check that a file can be written in it (raises OSError naming it)."""
    probe = out / ".grporec-write-check"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise OSError(f"cannot write the evaluation results to {out}: {e.strerror or e}") from None


def run_evaluation(cfg: Config, args, env, out: Path, max_rows: int, batch: int) -> None:
    """Score `args.model` on `args.split`; with --blend-a, rank by the blended recommender (grporec.blend)."""
    from grporec import commandline as cli
    from grporec.models.format import format_for
    from grporec.models.policy import load_policy
    from grporec.models.tokenizer import check_sid_tokenizer

    catalog = load_data_catalog(cfg.data)
    samples = eval_samples(cfg, load_split(cfg.data, args.split, catalog), max_rows)
    model, tokenizer = load_policy(args.model, cfg.model.dtype, env.device, key="--model")
    check_sid_tokenizer(tokenizer, catalog.sids, source=args.model)
    fmt = format_for(tokenizer, cfg.data.prompt_format, args.model, key="--model", max_prompt_tokens=cfg.data.max_prompt_tokens)
    trie = build_catalog_trie(fmt, catalog.sids, env.device)
    t0 = time.perf_counter()
    transitions = split_transitions(cfg, catalog) if cfg.data.train_file else None
    beams = exact_beams(trie) if args.exact else args.beams
    blend = cli.blend_settings(args, cfg, catalog, env.device)
    if blend is not None:  # the blended recommender: the model's beams, the Markov counts, SASRec (grporec.blend)
        from grporec.blend import blend_rank, score_candidates

        with dist.autocast(env, cfg.train):
            scored = score_candidates(model.eval(), fmt, trie, samples, blend.follows, beams, batch, env.device, sasrec=blend.sasrec)
        preds = blend_rank(scored, trie.names, blend.a, beams, blend.w)
        metrics = score(preds, samples, beams, catalog, tuple(args.ks), transitions)
    else:
        metrics, preds = evaluate(model, fmt, trie, samples, beams, batch, env, catalog, ks=tuple(args.ks),
                                  progress=cfg.train.progress and sys.stderr.isatty(), transitions=transitions,
                                  keep=max(args.ks) if args.exact else None)
    metrics["seconds"] = time.perf_counter() - t0
    metrics["rows_per_s"] = len(samples) / metrics["seconds"]
    if env.is_main:
        write_outputs(out, metrics, preds, samples, {"model": args.model, "split": args.split, "beams": "exact" if args.exact else args.beams,
                                                     "prompt_style": cfg.eval.prompt_style, "prompt_format": fmt.name,
                                                     "blend": args.blend, "blend_a": args.blend_a, "blend_sasrec": args.blend_sasrec,
                                                     "blend_w": args.blend_w})
        print(format_metrics(metrics))
        print(f"[evaluate] {len(samples)} rows in {metrics['seconds']:.1f} s; wrote {out / 'metrics.json'} and "
              f"{out / 'predictions.json'}")


def write_outputs(out: Path, metrics: dict, preds, samples, info: dict) -> None:
    (out / "metrics.json").write_text(json.dumps({**info, **{k: v for k, v in metrics.items() if k != "ranks"}}, indent=2))
    records = [{"input": prompt_input(s.prompt), "output": s.completion, "predict": [p for p in pr if p is not None]}
               for s, pr in zip(samples, preds)]
    (out / "predictions.json").write_text(json.dumps(records, indent=1))


def format_metrics(m: dict) -> str:
    """HR/NDCG values on one line (per-row ranks are left out), then one line per seen/unseen bucket."""
    keys = [k for k in m if k.startswith(("hr@", "ndcg@"))]
    line = "  ".join(f"{k}={m[k]:.4f}" for k in keys) + f"  rows={m['rows']}"
    line += f"  invalid={m['invalid_outputs']}" if "invalid_outputs" in m else ""
    for name in ("seen", "unseen"):
        if name in m:
            b = m[name]
            line += (f"\n  {name:6s} " + "  ".join(f"{k}={b[k]:.4f}" for k in keys if k in b)
                     + f"  rows={b['rows']} ({b['rows'] / max(m['rows'], 1):.1%}; {name} = the last item -> target "
                     f"transition {'occurs' if name == 'seen' else 'does not occur'} in the training rows)")
    return line


if __name__ == "__main__":
    sys.exit(main())
