"""Quality benchmark: does GRPO make a recommender better on real data? (not a test)

    python bench/quality.py --config configs/office-tiny.yaml --jobs 1
    python bench/quality.py --config configs/office-tiny.yaml --variants published add_gt --seeds 0
    python bench/quality.py --recipe --seeds 0 1 2 --jobs 3   # the config's whole staged recipe per seed, with
                                                              # baselines (bench/recipe_seeds.py)

One SFT model (trained once, reused: `<output_dir>/sft/best`), then GRPO variants from it, each
with several seeds (data order and sampling). Every model is scored on the held-out valid split
(for choices) and the test split (for the final figures) with constrained beam search, exactly as
`grporec.evaluate`; the classical baselines (most-popular, first-order Markov) on the same rows.
Per variant: HR@1/5/10/20 and NDCG@5/10/20 (mean over seeds), paired differences against the
SFT start with standard errors (per seed and the seed mean), frac_reward_zero_std and
frac_groups_without_hit over the first and last 10% of steps, the KL at the end, wall time.
Each run is a subprocess writing `<output_dir>/quality/<variant>/seed<k>/result.json`, so an
interrupted benchmark resumes where it stopped; `--jobs N` runs N at once (a GPU, or many cores).
Prints a table and writes JSON (--out).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from grporec import dist  # noqa: E402
from grporec.baselines import evaluate_baselines  # noqa: E402
from grporec.config import Config, load_config  # noqa: E402
from grporec.data.load import load_data_catalog, load_split  # noqa: E402
from grporec.decode import build_catalog_trie  # noqa: E402
from grporec.evaluate import eval_samples, evaluate, split_transitions  # noqa: E402
from grporec.metrics import paired_difference, paired_hr_difference  # noqa: E402

# Each variant is a list of overrides on top of the config's GRPO settings (lr, steps, batch), after
# BASE resets what variants differ in, so that the config's own recipe does not leak into them.
BASE = ["reward.names=null", "reward.reward_type=ranking", "rl.rollout=beam", "rl.add_gt=false", "rl.beta=1e-3",
        "rl.advantage=group", "rl.nll_coef=0.0"]
VARIANTS: dict[str, list[str]] = {
    "published": [],  # MiniOneRec's recipe: 16 beams, rule + ndcg_rule, beta 1e-3
    "add_gt": ["rl.add_gt=true"],
    "prefix": ["reward.reward_type=ranking_prefix"],
    "add_gt+prefix": ["reward.reward_type=ranking_prefix", "rl.add_gt=true"],
    "sample": ["rl.rollout=sample"],
    "add_gt+prefix+sample": ["reward.reward_type=ranking_prefix", "rl.rollout=sample", "rl.add_gt=true"],
    # Sampled groups have no beam rank, so ndcg_rule's rank penalty is noise there: rule + prefix only.
    "add_gt+rule_prefix+sample": ["reward.names=[rule,prefix]", "rl.rollout=sample", "rl.add_gt=true"],
    "add_gt+prefix+beta0.04": ["reward.reward_type=ranking_prefix", "rl.add_gt=true", "rl.beta=0.04"],
    # issue 14's switches: per-token prefix-tree advantages on the recommended recipe; the NLL anchor on MiniOneRec's
    "add_gt+rule_prefix+sample+sibling": ["reward.names=[rule,prefix]", "rl.rollout=sample", "rl.add_gt=true",
                                          "rl.advantage=sibling"],
    "published+nll0.1": ["rl.nll_coef=0.1"],
    "beam_sample": ["rl.rollout=beam_sample"],  # MiniOneRec's recipe with stochastic beams (T = 1)
    # issue 19: the Markov chain as a teacher reward beside the recommended recipe's exact-hit and prefix rewards
    "add_gt+rule_prefix+sample+markov": ["reward.names=[rule,prefix,markov]", "rl.rollout=sample", "rl.add_gt=true"],
    # issue 22: the recommended recipe with LoRA (rank 16, all linear layers, SID rows) at a LoRA-sized lr; its
    # reference is the SFT model with the adapters off (the full recipe's never syncs within 400 steps either)
    "add_gt+rule_prefix+sample+lora": ["reward.names=[rule,prefix]", "rl.rollout=sample", "rl.add_gt=true",
                                       "model.lora.rank=16", "rl.sync_ref_model=false", "train.lr=2e-3"],
}


def variant_overrides(name: str) -> list[str]:
    """A variant's overrides; `NAME@LR` is variant NAME at learning rate LR (for example
    `add_gt+rule_prefix+sample+lora@1e-3`), so that a rate sweep needs no new entries."""
    base, _, lr = name.partition("@")
    if base not in VARIANTS:
        raise SystemExit(f"--variants: unknown {base!r}; choose from {list(VARIANTS)} (optionally NAME@LR)")
    if lr:
        try:
            float(lr)
        except ValueError:
            raise SystemExit(f"--variants {name}: {lr!r} after @ is not a learning rate") from None
    return BASE + VARIANTS[base] + ([f"train.lr={lr}"] if lr else [])
METRICS = ("hr@1", "hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20")
PAIRED = (("ndcg", 10), ("hr", 10), ("hr", 20))


def env_for(device: str) -> dist.DistEnv:
    return dist.DistEnv(0, 1, 0, torch.device(device))


def score_model(cfg: Config, model_dir: Path, device: str) -> dict:
    """{split: metrics with per-row ranks} for valid and test."""
    from grporec.models.policy import load_policy

    catalog = load_data_catalog(cfg.data)
    from grporec.models.format import format_for

    model, tok = load_policy(model_dir, "float32", device)
    fmt = format_for(tok, cfg.data.prompt_format, model_dir, max_prompt_tokens=cfg.data.max_prompt_tokens)
    trie = build_catalog_trie(fmt, catalog.sids, device)
    transitions = split_transitions(cfg, catalog)
    out = {}
    for split in ("valid", "test"):
        samples = eval_samples(cfg, load_split(cfg.data, split, catalog), cfg.eval.max_rows)
        m, _ = evaluate(model, fmt, trie, samples, cfg.eval.test_beams, cfg.eval.batch_prompts, env_for(device), catalog,
                        ks=tuple(cfg.eval.ks), transitions=transitions)
        out[split] = m
    return out


def run_job(cfg: Config, variant: str, seed: int, steps: int, device: str) -> dict:
    """One GRPO run from the SFT model, then its scores (in this process)."""
    from grporec.checkpoint import latest_checkpoint
    from grporec.loop import train

    root = Path(cfg.output_dir)
    run_dir = root / "quality" / variant / f"seed{seed}"
    overrides = variant_overrides(variant) + [f"seed={seed}", f"output_dir={run_dir}", f"model.path={root / 'sft' / 'best'}",
                                     "train.eval_steps=0", "train.progress=false", "train.save_total_limit=1"]
    overrides += [f"train.max_steps={steps}"] if steps > 0 else []
    run_cfg = load_config(ARGS.config, ARGS.overrides + overrides)
    t0 = time.perf_counter()
    summary = train(run_cfg, env_for(device))
    wall = time.perf_counter() - t0
    hist = summary["history"] or [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    tenth = max(1, len(hist) // 10)

    def mean(key, part):
        vals = [h[key] for h in part if key in h]
        return sum(vals) / len(vals) if vals else float("nan")

    scores = score_model(run_cfg, latest_checkpoint(run_dir) / "policy", device)
    return {"variant": variant, "seed": seed, "overrides": overrides, "steps": summary["steps"], "wall_s": wall,
            "frac_reward_zero_std": [mean("frac_reward_zero_std", hist[:tenth]), mean("frac_reward_zero_std", hist[-tenth:])],
            "frac_groups_without_hit": [mean("frac_groups_without_hit", hist[:tenth]), mean("frac_groups_without_hit", hist[-tenth:])],
            "kl_end": mean("kl", hist[-tenth:]), "reward": [mean("reward", hist[:tenth]), mean("reward", hist[-tenth:])],
            "scores": scores}


def summarise(sft: dict, runs: list[dict]) -> dict:
    """Per variant: mean metrics over seeds, paired differences vs SFT (per seed and mean), mechanisms."""
    out = {}
    for variant in dict.fromkeys(r["variant"] for r in runs):
        rs = [r for r in runs if r["variant"] == variant]
        v = {"seeds": [r["seed"] for r in rs], "wall_s": sum(r["wall_s"] for r in rs) / len(rs),
             "kl_end": sum(r["kl_end"] for r in rs) / len(rs),
             "frac_reward_zero_std": [sum(r["frac_reward_zero_std"][i] for r in rs) / len(rs) for i in (0, 1)],
             "frac_groups_without_hit": [sum(r["frac_groups_without_hit"][i] for r in rs) / len(rs) for i in (0, 1)]}
        for split in ("valid", "test"):
            s = {m: sum(r["scores"][split][m] for r in rs) / len(rs) for m in METRICS}
            for part in ("seen", "unseen"):  # the transition buckets (grporec.metrics.bucket_metrics)
                if all(part in r["scores"][split] for r in rs):
                    s[part] = {m: sum(r["scores"][split][part][m] for r in rs) / len(rs) for m in ("hr@10", "ndcg@10")}
                    s[part]["rows"] = rs[0]["scores"][split][part]["rows"]
            for kind, k in PAIRED:
                per_seed = [paired_metric(sft[split]["ranks"], r["scores"][split]["ranks"], kind, k) for r in rs]
                s[f"diff_{kind}@{k}"] = {"per_seed": per_seed, "mean": sum(d for d, _ in per_seed) / len(per_seed),
                                         "relative": sum(d for d, _ in per_seed) / len(per_seed) / sft[split][f"{kind}@{k}"]
                                         if sft[split][f"{kind}@{k}"] > 0 else float("nan")}
            v[split] = s
        out[variant] = v
    return out


def paired_metric(ranks_a, ranks_b, kind: str, k: int) -> tuple[float, float]:
    """(mean difference b - a, standard error) of per-row NDCG@k or HR@k."""
    return (paired_difference if kind == "ndcg" else paired_hr_difference)(ranks_a, ranks_b, k)


def buckets(m: dict) -> str:
    """Seen / unseen HR@10 and NDCG@10 cells of a table row."""
    return " | ".join(f"{m[p]['hr@10']:.4f} / {m[p]['ndcg@10']:.4f}" if p in m else "-" for p in ("seen", "unseen"))


def table(report: dict, split: str) -> str:
    head = (f"| {split} | " + " | ".join(m.upper() for m in METRICS) + " | seen HR@10 / NDCG@10 | unseen HR@10 / NDCG@10 "
            "| dNDCG@10 (rel) | dHR@10 | dHR@20 | zero-std start/end | KL end |")
    lines = [head, "|---|" + "---:|" * (len(METRICS) + 7)]
    for name, m in report["baselines"][split].items():
        lines.append(f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS) + f" | {buckets(m)} | | | | | |")
    lines.append("| SFT | " + " | ".join(f"{report['sft'][split][k]:.4f}" for k in METRICS) + f" | {buckets(report['sft'][split])} | | | | | |")
    for name, v in report["variants"].items():
        s = v[split]
        d = s["diff_ndcg@10"]
        se = max(se for _, se in d["per_seed"])
        lines.append(f"| {name} | " + " | ".join(f"{s[k]:.4f}" for k in METRICS) + f" | {buckets(s)}"
                     + f" | {d['mean']:+.4f} ({d['relative']:+.1%}; SE {se:.4f}; seeds "
                     + " ".join(f"{x:+.4f}" for x, _ in d["per_seed"]) + ")"
                     + f" | {s['diff_hr@10']['mean']:+.4f} | {s['diff_hr@20']['mean']:+.4f}"
                     + f" | {v['frac_reward_zero_std'][0]:.2f}/{v['frac_reward_zero_std'][1]:.2f} | {v['kl_end']:.3f} |")
    return "\n".join(lines)


def main():
    if "--recipe" in sys.argv[1:]:  # a whole staged recipe over N seeds, with baselines (bench/recipe_seeds.py)
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from recipe_seeds import main as recipe_main

        return recipe_main(sys.argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "office-tiny.yaml"))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), help=f"of {list(VARIANTS)}; NAME@LR runs NAME at lr LR")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=0, help="GRPO steps per run (0: the config's train.max_steps)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (subprocesses)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per job (default: cores / jobs)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "quality_office.json"))
    ap.add_argument("--job", nargs=2, metavar=("VARIANT", "SEED"), help=argparse.SUPPRESS)  # internal: one run
    global ARGS
    ARGS, ARGS.overrides = ap.parse_known_args()
    for v in ARGS.variants:
        variant_overrides(v)  # an unknown name stops here, before any run
    ARGS.threads = ARGS.threads or max(1, (os.cpu_count() or 1) // ARGS.jobs)  # each job's share of the cores
    torch.set_num_threads(ARGS.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    cfg = load_config(ARGS.config, ARGS.overrides)
    root = Path(cfg.output_dir)
    if ARGS.job:
        variant, seed = ARGS.job[0], int(ARGS.job[1])
        result = run_job(cfg, variant, seed, ARGS.steps, ARGS.device)
        path = root / "quality" / variant / f"seed{seed}" / "result.json"
        path.write_text(json.dumps(result))
        return

    from grporec.data.prepare import ensure_derived_data
    from grporec.sft import train_sft

    t0 = time.perf_counter()
    ensure_derived_data(cfg)
    if not (root / "sft" / "best" / "config.json").is_file():
        print(f"[quality] SFT -> {root / 'sft'}", flush=True)
        train_sft(dataclasses.replace(cfg, output_dir=str(root / "sft")), env_for(ARGS.device))
    sft_file = root / "quality" / "sft_scores.json"
    if not sft_file.is_file():
        sft_file.parent.mkdir(parents=True, exist_ok=True)
        sft_file.write_text(json.dumps(score_model(cfg, root / "sft" / "best", ARGS.device)))
    sft = json.loads(sft_file.read_text())
    baselines = {split: {name: m for name, m in evaluate_baselines(cfg, split, cfg.eval.test_beams, cfg.eval.max_rows).items()}
                 for split in ("valid", "test")}

    todo = [(v, s) for v in ARGS.variants for s in ARGS.seeds
            if not (root / "quality" / v / f"seed{s}" / "result.json").is_file()]
    print(f"[quality] {len(todo)} GRPO runs to do ({ARGS.jobs} at once)", flush=True)

    def launch(job):
        v, s = job
        log = root / "quality" / v / f"seed{s}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, __file__, "--config", ARGS.config, "--job", v, str(s), "--steps", str(ARGS.steps),
               "--device", ARGS.device, "--threads", str(ARGS.threads),
               *ARGS.overrides]
        with log.open("w") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
        print(f"[quality] {v} seed {s}: {'done' if rc == 0 else f'FAILED (rc {rc}), see {log}'}", flush=True)
        return rc

    with ThreadPoolExecutor(ARGS.jobs) as pool:
        failed = [j for j, rc in zip(todo, pool.map(launch, todo)) if rc != 0]
    runs = [json.loads((root / "quality" / v / f"seed{s}" / "result.json").read_text())
            for v in ARGS.variants for s in ARGS.seeds if (root / "quality" / v / f"seed{s}" / "result.json").is_file()]
    strip = lambda m: {k: x for k, x in m.items() if k != "ranks"}  # noqa: E731
    report = {
        "config": ARGS.config, "overrides": ARGS.overrides, "device": torch.cuda.get_device_name() if ARGS.device.startswith("cuda") else "cpu",
        "steps": ARGS.steps, "seeds": ARGS.seeds, "variants_overrides": {v: variant_overrides(v) for v in ARGS.variants},
        "sft": {split: strip(m) for split, m in sft.items()},
        "baselines": {split: {n: strip(m) for n, m in b.items()} for split, b in baselines.items()},
        "variants": summarise(sft, runs), "runs": [{**r, "scores": {k: strip(m) for k, m in r["scores"].items()}} for r in runs],
        "failed": failed, "wall_s": time.perf_counter() - t0,
    }
    Path(ARGS.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ARGS.out).write_text(json.dumps(report, indent=2))
    for split in ("valid", "test"):
        print(f"\n{table(report, split)}")
    print(f"\n[quality] wrote {ARGS.out}")


if __name__ == "__main__":
    main()
