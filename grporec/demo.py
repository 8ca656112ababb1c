"""The embedded default: `python -m grporec.demo [--config configs/demo.yaml] [key=value ...]`.

On a fresh machine with no files and no network: generate the synthetic dataset (if absent),
build the tiny model and run the SFT warm start (if `<output_dir>/sft/best` is absent), evaluate
it, run GRPO from it, evaluate again, train SASRec on the same data as the classical baseline,
and print a before/after table and where everything was written. Finished stages are reused
when the command is run again.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from grporec import dist
from grporec.baselines import evaluate_baselines
from grporec.checkpoint import latest_checkpoint
from grporec import commandline as cli
from grporec.config import Config, dump_config
from grporec.data.prepare import ensure_derived_data, ensure_synthetic_data
from grporec.data.load import load_data_catalog, load_split
from grporec.evaluate import evaluate_model, format_metrics, split_transitions
from grporec.metrics import paired_difference
from grporec.loop import train as grpo_train
from grporec.models.sasrec import SASRec
from grporec.sasrec import evaluate_sasrec, train_and_save
from grporec.sft import train_sft

DEFAULT_CONFIG = "configs/demo.yaml"  # in the working directory, else beside the package (a source checkout)


def default_config() -> str:
    here = Path(DEFAULT_CONFIG)
    if here.is_file():
        return str(here)
    checkout = Path(__file__).resolve().parents[1] / DEFAULT_CONFIG
    if checkout.is_file():
        return str(checkout)
    raise cli.UsageError(f"no {DEFAULT_CONFIG} here or beside the grporec package; pass --config FILE")


def run_demo(cfg: Config) -> dict:
    env = dist.DistEnv(0, 1, 0, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    root = Path(cfg.output_dir)
    timings, t_all = {}, time.perf_counter()

    t = time.perf_counter()
    ensure_synthetic_data(cfg)
    ensure_derived_data(cfg)
    catalog = load_data_catalog(cfg.data)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(dump_config(cfg))  # after the data checks: a bad config leaves an old run's alone
    print(f"[data] {catalog.describe()}")
    timings["data"] = time.perf_counter() - t

    t = time.perf_counter()
    sft_dir = root / "sft"
    if not (sft_dir / "best" / "config.json").is_file():
        print(f"[sft] supervised warm start of the {'tiny from-scratch' if cfg.sft.init == 'tiny' else cfg.sft.init} model -> {sft_dir}")
        if train_sft(dataclasses.replace(cfg, output_dir=str(sft_dir)), env)["stopped"]:
            return stopped("sft")
    else:
        print(f"[sft] reusing {sft_dir / 'best'}")
    timings["sft"] = time.perf_counter() - t

    t = time.perf_counter()
    sft_metrics = evaluate_model(cfg, sft_dir / "best", "test", env, root / "eval-sft")
    print(f"[eval] SFT   {format_metrics(sft_metrics)}")
    timings["eval_sft"] = time.perf_counter() - t

    t = time.perf_counter()
    grpo_dir = root / "grpo"
    grpo_cfg = dataclasses.replace(cfg, output_dir=str(grpo_dir), model=dataclasses.replace(cfg.model, path=str(sft_dir / "best")))
    done = latest_checkpoint(grpo_dir)
    if done is None or not done.name.endswith(f"{cfg.train.max_steps:07d}"):
        print(f"[grpo] {cfg.train.prompts_per_step} prompts x {cfg.rl.num_generations} {cfg.rl.rollout} completions "
              f"per step from the SFT model -> {grpo_dir}")
        if grpo_train(grpo_cfg, env)["stopped"]:
            return stopped("grpo")
    else:
        print(f"[grpo] reusing {done}")
    grpo_policy = latest_checkpoint(grpo_dir) / "policy"
    timings["grpo"] = time.perf_counter() - t

    t = time.perf_counter()
    grpo_metrics = evaluate_model(cfg, grpo_policy, "test", env, root / "eval-grpo")
    print(f"[eval] GRPO  {format_metrics(grpo_metrics)}")
    timings["eval_grpo"] = time.perf_counter() - t

    t = time.perf_counter()
    sasrec_dir = Path(cfg.sasrec.path or root / "sasrec")
    if not (sasrec_dir / "sasrec.json").is_file():
        train_and_save(cfg, catalog, sasrec_dir, str(env.device))  # as `grporec sasrec train` does
    sasrec_metrics = evaluate_sasrec(SASRec.load(sasrec_dir, env.device), catalog, load_split(cfg.data, "test", catalog),
                                     ks=tuple(cfg.eval.ks), transitions=split_transitions(cfg, catalog))
    timings["sasrec"] = time.perf_counter() - t
    baselines = evaluate_baselines(cfg, "test", cfg.eval.test_beams)
    for m in baselines.values():
        m.pop("ranks")
    timings["total"] = time.perf_counter() - t_all

    k = summary_k(cfg.eval.ks)
    diff, se = paired_difference(sft_metrics.pop("ranks"), grpo_metrics.pop("ranks"), k)
    results = {"MostPop": baselines["most_popular"], "Markov": baselines["markov"], "SASRec": sasrec_metrics, "SFT": sft_metrics, "GRPO": grpo_metrics, "seconds": timings,
               "prompt_style": cfg.eval.prompt_style, "beams": cfg.eval.test_beams,
               "grpo_minus_sft_ndcg": {"k": k, "mean": diff, "stderr": se, "rows": sft_metrics["rows"]}}
    (root / "demo_results.json").write_text(json.dumps(results, indent=2))
    print(results_table(results, cfg.eval.ks))
    report = write_demo_report(root)
    print(f"\nWritten under {root}/: data {Path(cfg.data.info_file).parent.parent}, SFT model {sft_dir / 'best'}, "
          f"GRPO checkpoints {grpo_dir / 'checkpoints'}, metrics {grpo_dir / 'metrics.jsonl'}, evaluations "
          f"{root / 'eval-sft'} and {root / 'eval-grpo'}, SASRec {sasrec_dir}, summary {root / 'demo_results.json'}"
          + (f", report with training curves {report}" if report else " (pip install matplotlib for a report with training curves)"))
    return results


def stopped(stage: str) -> dict:
    """A stop request (SIGTERM, Ctrl-C) ends the whole demo after the stage's checkpoint."""
    print(f"[demo] stopped during {stage} (its checkpoint is written); run the same command to resume", flush=True)
    return {"stopped": stage}


def summary_k(ks) -> int:
    """The K of the summary line: 10 when the table has it, else the largest K in the table."""
    return 10 if 10 in ks else max(ks)


def write_demo_report(root: Path) -> Path | None:
    """The run's report (figures + report.md) when matplotlib is installed, else None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    from grporec.report import write_report

    return write_report([root], root / "report")


def results_table(results: dict, ks) -> str:
    cols = [f"{m}@{k}" for m in ("hr", "ndcg") for k in ks]
    lines = [f"\nTest split, {results['beams']}-beam constrained decoding ({results['prompt_style']} prompt); "
             f"SASRec ranks all SIDs; MostPop and Markov are the classical baselines (grporec.baselines)", "| model | " + " | ".join(c.upper() for c in cols) + " |",
             "|---|" + "---:|" * len(cols)]
    for name in ("MostPop", "Markov", "SASRec", "SFT", "GRPO"):
        lines.append(f"| {name} | " + " | ".join(f"{results[name][c]:.4f}" for c in cols) + " |")
    k = summary_k(ks)
    seen, unseen = results["Markov"]["seen"]["rows"], results["Markov"]["unseen"]["rows"]
    lines += [f"\nBy transition (seen: the row's last item -> target occurs in the training rows; {seen} seen rows, "
              f"{unseen} unseen): HR@{k} / NDCG@{k}", "| model | seen | unseen |", "|---|---:|---:|"]
    for name in ("MostPop", "Markov", "SASRec", "SFT", "GRPO"):
        b = results[name]
        lines.append(f"| {name} | " + " | ".join(f"{b[part][f'hr@{k}']:.4f} / {b[part][f'ndcg@{k}']:.4f}" if b[part]["rows"] else "-"
                                                  for part in ("seen", "unseen")) + " |")
    d = results["grpo_minus_sft_ndcg"]
    lines.append(f"\nGRPO - SFT, NDCG@{d['k']}: {d['mean']:+.4f} (paired over the same {d['rows']} rows: standard error "
                 f"{d['stderr']:.4f}, so {d['mean'] / d['stderr']:+.1f} standard errors)" if d["stderr"] > 0 else
                 f"\nGRPO - SFT, NDCG@{d['k']}: {d['mean']:+.4f}")
    lines.append("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in results["seconds"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "python -m grporec.demo") -> int:
    def body(args_list):
        ap = cli.config_parser(prog, "The whole pipeline in one command: data -> SFT -> GRPO -> evaluation -> baselines.",
                               "python -m grporec.demo --config configs/office-tiny.yaml", config_required=False)
        ap.set_defaults(config=None)
        args, _ = ap.parse_known_args(args_list)
        if args.config is None:
            args_list = ["--config", default_config()] + args_list
        args, cfg = cli.parse_config(ap, args_list, Config)
        cli.quiet_transformers()
        if cfg.recipe:  # a staged recipe (configs/office-tiny.yaml): its stages instead of the demo's two
            from grporec.recipe import run_recipe

            run_recipe(args.config, args.overrides, cfg)
        else:
            run_demo(cfg)

    return cli.run(body, argv)


if __name__ == "__main__":
    sys.exit(main())
