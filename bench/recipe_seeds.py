"""A staged recipe over N seeds, with the classical baselines seeded alike (`bench/quality.py --recipe`).

    python bench/quality.py --recipe --config configs/office-tiny.yaml --seeds 0 1 2 --jobs 3 \
        --out bench/results/recipe_office.json

Each seed runs SASRec with its tuned settings (`--sasrec`, chosen on valid by
bench/experiments/sasrec_tune.py; the model is kept in `<seed dir>/sasrec_tuned/`), the whole recipe
(`grporec recipe`, every stage trained, chosen on valid and scored on valid and test) in
`<output_dir>/seeds/seed<k>`, and then the blended recommenders of its final SFT and GRPO models
(bench/blend.py, fitted on valid): the model with the Markov counts (`blend_sft`, `blend`) and with
SASRec in the prior too (`blend_sasrec_sft`, `blend_sasrec`). Most-popular and the first-order
Markov chain are deterministic and scored once. Runs are subprocesses (`--jobs` at once: a GPU or
many cores), each resuming where it stopped. The JSON has `"seeds"` and
`"rows": {row: {split: {metric: [one value per seed]}}}` (rows: the baselines, `sft_<stage>`
for each SFT stage but the last, `sft` for the last, `grpo`, the blends; with `--against CONFIG`, that recipe's
runs of the same seeds as `base_<row>`), and `"differences"`: for
each claimed pair, the per-seed paired difference over the same rows with its standard error, the
seed mean and the spread across seeds. Beside it, `<out>.ranks.json.gz` keeps every row's per-user ranks,
so that a later session, whose models are gone, pairs its own runs with them: `--against <out>.json`.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from grporec.baselines import evaluate_baselines  # noqa: E402
from grporec.config import load_config  # noqa: E402
from grporec.data.load import load_data_catalog, load_split  # noqa: E402
from grporec.data.prepare import ensure_derived_data  # noqa: E402
from grporec.metrics import paired_difference, paired_hr_difference, train_transitions  # noqa: E402
from grporec.recipe import check_recipe  # noqa: E402

SPLITS = ("valid", "test")
SASREC_TUNED = ["hidden=128", "blocks=2", "dropout=0.2", "weight_decay=0.1"]  # bench/results/sasrec_tuned_office.json
# (a, b): the differences b - a the results claim, by row name
PAIRS = (("sft", "grpo"), ("markov", "sft"), ("sasrec_tuned", "sft"), ("markov", "grpo"), ("sasrec_tuned", "grpo"),
         ("markov", "blend"), ("sasrec_tuned", "blend"), ("blend_sft", "blend"), ("markov", "blend_sasrec_sft"),
         ("sasrec_tuned", "blend_sasrec_sft"), ("blend_sft", "blend_sasrec_sft"), ("markov", "blend_sasrec"),
         ("sasrec_tuned", "blend_sasrec"), ("blend", "blend_sasrec"), ("blend_sasrec_sft", "blend_sasrec"))
CLASSICAL = ("most_popular", "markov", "sasrec_tuned")  # the baselines' rows: every recipe's report scores its own
# with --against (another recipe's runs, e.g. the all-rows SFT a held-back variant must beat): its rows, prefixed
AGAINST = "base_"
AGAINST_PAIRS = (("base_sft", "sft"), ("base_sft", "grpo"), ("base_grpo", "grpo"), ("base_blend_sasrec_sft", "blend_sasrec_sft"),
                 ("base_blend_sasrec_sft", "blend_sasrec"), ("base_blend_sasrec", "blend_sasrec"))
BLEND_ROWS = {"sft": "blend_sft", "grpo": "blend"}  # the blend (bench/blend.py, a chosen on valid) from each of these rows
SASREC_BLEND_ROWS = {"sft": "blend_sasrec_sft", "grpo": "blend_sasrec"}  # the same with SASRec in the prior (a, w on valid)


def metric_values(m: dict) -> dict:
    """The figures the results file keeps for one model on one split."""
    out = {k: m[k] for k in ("ndcg@10", "hr@10", "hr@20")}
    for part in ("seen", "unseen"):
        if part in m and m[part]["rows"]:
            out[f"ndcg@10_{part}"] = m[part]["ndcg@10"]
        elif f"ndcg@10_{part}" in m:  # bench/blend.py's figures, already flat
            out[f"ndcg@10_{part}"] = m[f"ndcg@10_{part}"]
    return out


def seed_dir(root: Path, seed: int) -> Path:
    return root / "seeds" / f"seed{seed}"


def stage_rows(stages) -> dict[str, str]:
    """{row name: stage name}: the last SFT stage is `sft`, earlier ones `sft_<name>`, a GRPO stage `grpo`,
    a sasrec or blend stage `stage_<name>`."""
    sfts = [s.name for s in stages if s.kind == "sft"]
    grpos = [s.name for s in stages if s.kind == "grpo"]
    rows = {f"stage_{s.name}": s.name for s in stages if s.kind in ("sasrec", "blend")}
    rows.update({("sft" if n == sfts[-1] else f"sft_{n}"): n for n in sfts})
    rows.update({("grpo" if len(grpos) == 1 else f"grpo_{n}"): n for n in grpos})
    return rows


def run_sasrec(args, cfg, seed: int) -> None:
    """Train SASRec with the tuned settings and this seed; its metrics and per-row ranks to JSON."""
    from grporec.sasrec import evaluate_sasrec, train_sasrec

    sas_cfg = replace(cfg.sasrec, **{k: type(getattr(cfg.sasrec, k))(v) for k, v in (kv.split("=") for kv in args.sasrec)})
    catalog = load_data_catalog(cfg.data)
    train = load_split(cfg.data, "train", catalog)
    model, _ = train_sasrec(sas_cfg, catalog, train, load_split(cfg.data, "valid", catalog), seed=seed, device=args.device,
                            progress=False)
    transitions = train_transitions(train)
    rows = lambda split: load_split(cfg.data, split, catalog)[:cfg.eval.max_rows if cfg.eval.max_rows > 0 else None]  # noqa: E731
    out = {split: evaluate_sasrec(model, catalog, rows(split), ks=(10, 20), transitions=transitions, with_ranks=True)
           for split in SPLITS}
    path = seed_dir(Path(cfg.output_dir), seed) / "sasrec_tuned.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path.with_suffix(""))  # for the blend with SASRec in its prior
    path.write_text(json.dumps(out))


def launch(args, cfg, job: tuple[str, int], root: Path) -> int:
    kind, seed = job
    d = seed_dir(root, seed)
    d.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve().parent
    if kind == "recipe":
        cmds = [[sys.executable, "-m", "grporec.recipe", "--config", args.config, "--threads", str(args.threads),
                 *args.overrides, f"seed={seed}", f"output_dir={d}", "train.progress=false", "sft.train.progress=false"]]
    elif kind == "sasrec":
        cmds = [[sys.executable, str(here / "quality.py"), "--recipe", "--config", args.config, "--job-sasrec", str(seed),
                 "--device", args.device, "--threads", str(args.threads), *args.overrides]]
    else:  # the blended recommenders from the final SFT and GRPO models (bench/blend.py), with and without SASRec
        cmds = []
        for row, out, with_sasrec in blend_files(args, cfg, d):
            model = json.loads((d / stage_rows(cfg.recipe)[row] / "stage.json").read_text())["model"]
            sasrec = (["--sasrec", str(d / "sasrec_tuned"), "--save-scores", str(d / f"scores_{row}.pt")]  # for blend_forms.py
                      if with_sasrec else [])
            cmds.append([sys.executable, str(here / "blend.py"), "--config", args.config, "--model", model, *sasrec,
                         "--device", args.device, "--threads", str(args.threads), "--out", str(out), *args.overrides,
                         f"seed={seed}", f"output_dir={d}"])
    t0 = time.perf_counter()
    rc = 0
    with (d / f"{kind}.log").open("a") as f:
        for cmd in cmds:
            rc = rc or subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=os.getcwd()).returncode
    status = "done" if rc == 0 else f"FAILED (rc {rc}), see {d / f'{kind}.log'}"
    print(f"[recipe-seeds] {kind} seed {seed}: {status} in {time.perf_counter() - t0:.0f} s", flush=True)
    return rc


def blend_files(args, cfg, d: Path) -> list[tuple[str, Path, bool]]:
    """(stage row, output file, with SASRec) of each blend a seed still lacks: `blend_<row>.json` (the
    model and the counts) and `blend_sasrec_<row>.json` (SASRec in the prior too) for the final SFT
    and GRPO rows."""
    rows = [r for r in BLEND_ROWS if r in stage_rows(cfg.recipe)] if args.blend else []
    files = [(r, d / f"blend_{r}.json", False) for r in rows if args.blend_counts] + [
        (r, d / f"blend_sasrec_{r}.json", True) for r in rows if args.blend_sasrec]
    return [entry for entry in files if not entry[1].is_file()]


def collect(cfg, root: Path, seeds: list[int], classical: bool = True) -> tuple[dict, dict, dict, list[str]]:
    """(rows {name: {split: {metric: [per seed]}}}, ranks {name: {split: [per seed ranks]}}, seconds per
    seed, rows missing): a row is kept only when every seed has it (a stopped benchmark keeps what is done).
    classical=False: the recipe's own rows only (most-popular, Markov and the tuned SASRec left out)."""
    baselines = {split: evaluate_baselines(cfg, split, cfg.eval.test_beams, cfg.eval.max_rows) for split in SPLITS} if classical else {}
    found = {}  # {name: {seed: {split: (metrics, ranks)}}}
    for seed in seeds:
        d = seed_dir(root, seed)
        for name in ("most_popular", "markov") if classical else ():
            found.setdefault(name, {})[seed] = {split: (baselines[split][name], baselines[split][name]["ranks"]) for split in SPLITS}
        if classical and (d / "sasrec_tuned.json").is_file():
            sas = json.loads((d / "sasrec_tuned.json").read_text())
            found.setdefault("sasrec_tuned", {})[seed] = {split: (sas[split], sas[split]["ranks"]) for split in SPLITS}
        for prefix, names in (("blend", BLEND_ROWS), ("blend_sasrec", SASREC_BLEND_ROWS)):
            for row, name in names.items():
                if (d / f"{prefix}_{row}.json").is_file():
                    b = json.loads((d / f"{prefix}_{row}.json").read_text())["splits"]
                    found.setdefault(name, {})[seed] = {split: (b[split]["chosen"], b[split]["chosen"]["ranks"]) for split in SPLITS}
        for row, stage in stage_rows(cfg.recipe).items():
            if (d / stage / "stage.json").is_file():
                record = json.loads((d / stage / "stage.json").read_text())
                stage_ranks = json.loads((d / stage / "ranks.json").read_text())
                found.setdefault(row, {})[seed] = {split: (record[split], stage_ranks[split]) for split in SPLITS}
                found[row][seed]["seconds"] = record["seconds"]
    names = list(CLASSICAL) if classical else []
    names = [*names, *stage_rows(cfg.recipe), *BLEND_ROWS.values(), *SASREC_BLEND_ROWS.values()]
    rows, ranks, seconds = {}, {}, {seed: {} for seed in seeds}
    for name in names:
        if len(found.get(name, {})) < len(seeds):
            continue
        for seed in seeds:
            for split in SPLITS:
                m, r = found[name][seed][split]
                for key, v in metric_values(m).items():
                    rows.setdefault(name, {}).setdefault(split, {}).setdefault(key, []).append(v)
                ranks.setdefault(name, {}).setdefault(split, []).append(r)
            if "seconds" in found[name][seed]:
                seconds[seed][name] = found[name][seed]["seconds"]
    return rows, ranks, seconds, [n for n in names if n not in rows]


@dataclass
class Recorded:
    """A recipe's recorded runs (--against RESULTS): its results file and the per-user ranks beside it."""
    path: str
    results: dict  # the results file: {"rows": {row: {split: {metric: [per seed]}}}, "missing_rows": [...], ...}
    seeds: list[int]
    ranks: dict  # {row: {split: [per seed [per user rank]]}}


def environment() -> dict:
    """What the report's figures depend on besides the code and the seeds: the commit, the libraries and the CPU's
    vector kernels. Training is deterministic on one machine, but other kernels or library versions round
    differently and training amplifies it: on 2026-12-05 the all-rows SFT models of earlier sessions did not
    reproduce with unchanged code (docs/results.md, "Longer GRPO")."""
    import importlib.metadata
    import platform

    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.is_file() else []
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {"commit": git.stdout.strip() if git.returncode == 0 else None, "python": platform.python_version(),
            **{p: importlib.metadata.version(p) for p in ("torch", "transformers", "tokenizers", "numpy")},
            "cpu": names[0] if names else platform.processor(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def ranks_path(out: Path) -> Path:
    """The per-user ranks file written beside a results file: recipe_office.json -> recipe_office.ranks.json.gz."""
    return out.with_name(out.stem + ".ranks.json.gz")


def write_ranks(out: Path, cfg, seeds: list[int], ranks: dict) -> Path:
    """Every row's per-user first-hit ranks (-1: a miss), per split and seed, gzipped beside the results file:
    a later session, whose trained models are gone, can still pair its runs with these users (--against FILE)."""
    path = ranks_path(out)
    valid_sha, test_sha = digests(cfg.data.valid_file, cfg.data.test_file)
    payload = {"valid_file": cfg.data.valid_file, "test_file": cfg.data.test_file, "valid_sha256": valid_sha,
               "test_sha256": test_sha, "seeds": seeds, "rows": ranks}
    path.write_bytes(gzip.compress(json.dumps(payload, separators=(",", ":")).encode(), mtime=0))  # mtime 0: same runs, same bytes
    return path


def digests(*paths: str) -> tuple[str | None, ...]:
    """The sha256 of each file (None where absent): what decides whether two recipes score the same rows, whatever
    their paths (runs/office-tiny/data and runs/office-tiny-lastitem/data hold the same bytes)."""
    return tuple(hashlib.sha256(Path(p).read_bytes()).hexdigest() if Path(p).is_file() else None for p in paths)


def load_base(path: str, cfg, seeds: list[int]):
    """--against's recipe, checked before any run starts: a config (its runs in its output_dir; returned loaded) or a
    results file of this benchmark with its ranks file beside it (recorded runs; returned as Recorded). It must
    score the same valid and test rows, or the paired differences would pair different users; a results file
    must hold every seed asked for."""
    if path.endswith(".json"):
        ranks_file = ranks_path(Path(path))
        if not ranks_file.is_file():
            raise SystemExit(f"[recipe-seeds] --against {path}: no {ranks_file} beside it (per-user ranks are written "
                             "with every results file since 2026-12-05); pass the recipe's config to use its runs instead")
        recorded = json.loads(gzip.decompress(ranks_file.read_bytes()))
        base = Recorded(path, json.loads(Path(path).read_text()), recorded["seeds"], recorded["rows"])
        files = (recorded["valid_file"], recorded["test_file"])
        # files recorded before 2026-12-07 have no digests: the recorded paths' contents here stand in
        theirs = (recorded.get("valid_sha256"), recorded.get("test_sha256"))
        theirs = theirs if None not in theirs else digests(*files)
        lacking = [s for s in seeds if s not in base.seeds]
        if lacking:
            raise SystemExit(f"[recipe-seeds] --against {path} recorded seeds {base.seeds}, not {lacking}")
    else:
        base = load_config(path)
        files = (base.data.valid_file, base.data.test_file)
        theirs = digests(*files)
    own_files = (cfg.data.valid_file, cfg.data.test_file)
    for split, their, mine, file, own in zip(SPLITS, theirs, digests(*own_files), files, own_files):
        if their is None or mine is None:
            raise SystemExit(f"[recipe-seeds] --against {path}: cannot tell whether it scores this recipe's {split} rows: "
                             f"{file if their is None else own} is absent")
        if their != mine:
            raise SystemExit(f"[recipe-seeds] --against {path} scores {file}, this recipe {own}, whose contents differ: "
                             f"paired differences need the same {split} rows")
    return base


def recorded_rows(base: Recorded, seeds: list[int]) -> tuple[dict, dict, list[str]]:
    """(rows, ranks, missing) of a recorded recipe, the asked-for seeds in their order, its own rows only (as
    collect(classical=False): the baselines are this run's too)."""
    at = [base.seeds.index(s) for s in seeds]
    names = [n for n in base.results["rows"] if n not in CLASSICAL and not n.startswith(AGAINST)]
    rows = {n: {split: {k: [v[i] for i in at] for k, v in base.results["rows"][n][split].items()} for split in SPLITS} for n in names}
    ranks = {n: {split: [base.ranks[n][split][i] for i in at] for split in SPLITS} for n in names}
    return rows, ranks, [n for n in base.results.get("missing_rows", []) if not n.startswith(AGAINST)]


def with_base(base, seeds: list[int], rows: dict, ranks: dict, missing: list[str]) -> tuple[dict, dict, list[str]]:
    """rows, ranks and missing with the base recipe's rows (load_base) added as base_<row>."""
    if isinstance(base, Recorded):
        where, (b_rows, b_ranks, b_missing) = base.path, recorded_rows(base, seeds)
    else:
        where, (b_rows, b_ranks, _, b_missing) = base.output_dir, collect(base, Path(base.output_dir), seeds, classical=False)
    for name in b_rows:
        for split in SPLITS:
            if len(b_ranks[name][split][0]) != len(ranks["markov"][split][0]):
                raise SystemExit(f"[recipe-seeds] --against {where}: {name} scored a different number of {split} rows")
    return ({**rows, **{AGAINST + k: v for k, v in b_rows.items()}}, {**ranks, **{AGAINST + k: v for k, v in b_ranks.items()}},
            missing + [AGAINST + k for k in b_missing])


def differences(ranks: dict, seeds: list[int]) -> dict:
    """Per claimed pair and split: per-seed paired differences (value, SE), seed mean and spread."""
    out = {}
    for a, b in PAIRS + AGAINST_PAIRS:
        if a not in ranks or b not in ranks:
            continue
        for split in SPLITS:
            entry = {}
            for metric, fn in (("ndcg@10", lambda x, y: paired_difference(x, y, 10)),
                               ("hr@10", lambda x, y: paired_hr_difference(x, y, 10)), ("hr@20", lambda x, y: paired_hr_difference(x, y, 20))):
                per_seed = [fn(ranks[a][split][i], ranks[b][split][i]) for i in range(len(seeds))]
                values = [v for v, _ in per_seed]
                entry[metric] = {"per_seed": [{"diff": v, "se": se} for v, se in per_seed], "mean": statistics.fmean(values),
                                 "spread_sd": statistics.stdev(values) if len(values) > 1 else 0.0}
            out.setdefault(f"{b} - {a}", {})[split] = entry
    return out


def table(rows: dict, split: str, seeds: list[int]) -> str:
    head = f"| {split} ({len(seeds)} seeds) | NDCG@10 mean (per seed) | HR@10 | HR@20 | seen NDCG@10 | unseen NDCG@10 |"
    lines = [head, "|---|---|---:|---:|---:|---:|"]
    for name, r in rows.items():
        m = r[split]
        cell = lambda k: f"{statistics.fmean(m[k]):.4f}" if k in m else "-"  # noqa: E731
        lines.append(f"| {name} | {statistics.fmean(m['ndcg@10']):.4f} ({' '.join(f'{v:.4f}' for v in m['ndcg@10'])}) "
                     f"| {cell('hr@10')} | {cell('hr@20')} | {cell('ndcg@10_seen')} | {cell('ndcg@10_unseen')} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", action="store_true")
    ap.add_argument("--config", default=str(ROOT / "configs" / "office-tiny.yaml"))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (subprocesses)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per run (default: cores / jobs)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-blend", dest="blend", action="store_false", help="no blend rows (bench/blend.py per seed)")
    ap.add_argument("--no-blend-sasrec", dest="blend_sasrec", action="store_false",
                    help="no blend rows with SASRec in the prior (blend_sasrec_*)")
    ap.add_argument("--no-blend-counts", dest="blend_counts", action="store_false",
                    help="no blend rows without SASRec (blend_sft, blend): only the blend_sasrec_* rows")
    ap.add_argument("--sasrec", nargs="*", default=SASREC_TUNED, help="SASRec settings, KEY=VALUE of the sasrec section")
    ap.add_argument("--device-name", default=None, help="the device the runs used, for the report (with --collect)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "recipe_office.json"))
    ap.add_argument("--collect", action="store_true", help="run nothing: report the runs already in output_dir "
                    "(rows that some seed lacks are listed as missing)")
    ap.add_argument("--against", default=None, metavar="CONFIG|RESULTS",
                    help="another recipe, reported beside this one as base_<row> with paired differences (same seeds, same "
                    "data): its config (its runs in its output_dir) or its results file with the ranks file beside it "
                    "(recorded runs, whose models are gone): e.g. the all-rows recipe a data.hold_back variant must beat")
    ap.add_argument("--job-sasrec", type=int, default=None, help=argparse.SUPPRESS)  # internal: one SASRec seed
    args, args.overrides = ap.parse_known_args(argv)
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    if args.job_sasrec is not None:
        return run_sasrec(args, cfg, args.job_sasrec)
    check_recipe(cfg.recipe)
    ensure_derived_data(cfg)  # once, before the runs that read it (and before --against compares their contents)
    base = load_base(args.against, cfg, args.seeds) if args.against else None  # refused now, not after hours of runs
    root = Path(cfg.output_dir)
    t0 = time.perf_counter()
    def done(kind: str, seed: int) -> bool:
        d = seed_dir(root, seed)
        if kind == "sasrec":
            return (d / "sasrec_tuned.json").is_file() and (d / "sasrec_tuned" / "sasrec.json").is_file()
        return (d / "recipe_results.json").is_file()

    # SASRec first (minutes; the blends need it), then the recipes, then the blends of what they trained
    todo = [] if args.collect else [(kind, s) for kind in ("sasrec", "recipe") for s in args.seeds if not done(kind, s)]
    print(f"[recipe-seeds] {len(todo)} runs to do ({args.jobs} at once, {args.threads} threads each)", flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        failed = [j for j, rc in zip(todo, pool.map(lambda j: launch(args, cfg, j, root), todo)) if rc != 0]
        blends = [] if args.collect or failed else [("blend", s) for s in args.seeds if blend_files(args, cfg, seed_dir(root, s))]
        failed += [j for j, rc in zip(blends, pool.map(lambda j: launch(args, cfg, j, root), blends)) if rc != 0]
    if failed:
        raise SystemExit(f"[recipe-seeds] {len(failed)} runs failed: {failed}; run the same command again to resume them")
    rows, ranks, seconds, missing = collect(cfg, root, args.seeds)
    if base is not None:
        rows, ranks, missing = with_base(base, args.seeds, rows, ranks, missing)
    report = {"config": args.config, "overrides": args.overrides, "against": args.against, "seeds": args.seeds, "sasrec_settings": args.sasrec,
              "device": args.device_name or (torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"),
              "environment": environment(),  # of the machine that wrote this report (--collect: where it ran)
              "missing_rows": missing,
              "stages": {row: stage for row, stage in stage_rows(cfg.recipe).items()}, "rows": rows,
              "differences": differences(ranks, args.seeds), "seconds_per_seed": seconds,
              "wall_s": time.perf_counter() - t0}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    write_ranks(Path(args.out), cfg, args.seeds, {n: r for n, r in ranks.items() if not n.startswith(AGAINST)})
    for split in SPLITS:
        print("\n" + table(rows, split, args.seeds))
    for pair, d in report["differences"].items():
        t = d["test"]["ndcg@10"]
        print(f"test NDCG@10 {pair}: mean {t['mean']:+.4f} (seeds " + " ".join(f"{x['diff']:+.4f}+-{x['se']:.4f}" for x in t["per_seed"])
              + f"; spread sd {t['spread_sd']:.4f})")
    print(f"\n[recipe-seeds] wrote {args.out} and {ranks_path(Path(args.out))}" + (f"; missing rows (not finished in every seed): {missing}" if missing else ""))
