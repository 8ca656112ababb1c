"""Staged recipes: `grporec recipe --config FILE [section.key=value ...]`.

A recipe is the config's `recipe:` list, run in order (SFT stages, then GRPO): each stage is the
config with the stage's own overrides, then the command line's, in `<output_dir>/<stage>`, and
starts from the previous stage's model (`sft.init` / `model.path`; the first SFT stage keeps the
config's `sft.init`). The model a stage hands on is its choice: an SFT stage's valid-best
(`sft.select_on`), a GRPO stage's last checkpoint. A `sasrec` stage trains the SASRec of the
config's `sasrec:` section, seeded like the rest, into `<output_dir>/<stage>/model`; it hands on no
generative model, but every later stage's `reward.sasrec_path` (the `sasrec` and `teacher` rewards)
is it, unless the stage or the command line sets that key. A `blend` stage fits the blended
recommender of the last generative model and that SASRec on valid (grporec.blend_stage) into
`<output_dir>/<stage>`: the recommender the recipe ships (`grporec eval|recommend --blend DIR`). Prompt settings a stage does not set come from
the model it starts from (grporec.models.settings). Each finished stage is scored on valid and
test (`cfg.eval`) and marked done with `stage.json`; running the command again skips finished
stages and resumes an interrupted one from its checkpoint. A stop request (SIGTERM, Ctrl-C) ends
the whole recipe after the stage's checkpoint, not just the stage.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from grporec import commandline as cli, dist
from grporec.checkpoint import latest_checkpoint
from grporec.config import Config, StageConfig, load_config
from grporec.data.load import load_data_catalog, load_split
from grporec.data.prepare import ensure_derived_data, ensure_synthetic_data
from grporec.errors import SettingsError
from grporec.evaluate import evaluate_model, format_metrics
from grporec.metrics import train_transitions
from grporec.models.settings import adopt_model_settings, override_keys

STAGE_FILE = "stage.json"  # written when a stage is trained and scored: its model, metrics and time
SPLITS = ("valid", "test")


def check_recipe(stages: list[StageConfig]) -> None:
    """Reject a recipe that cannot run, naming the stage."""
    if not stages:
        raise SettingsError("recipe is empty: list its stages under recipe: (see configs/office-tiny.yaml)")
    names = [s.name for s in stages]
    for i, s in enumerate(stages):
        if not s.name or "/" in s.name or s.name.startswith("."):
            raise SettingsError(f"recipe[{i}].name {s.name!r}: a stage's name is its directory: no '/', not empty")
        if s.name in names[:i]:
            raise SettingsError(f"recipe[{i}].name {s.name!r} is used by two stages (recipe[{names.index(s.name)}] too)")
        bad = [o for o in s.overrides if "=" not in o]
        if bad:
            raise SettingsError(f"recipe[{i}] ({s.name}).overrides: {bad[0]!r} is not section.key=value")
        start_key = {"grpo": "model.path", "blend": "model.path", "sft": "sft.init", "sasrec": "sasrec.path"}[s.kind]
        fixed = override_keys(s.overrides) & {"output_dir", "recipe", start_key}
        if fixed and not (s.kind == "sft" and i == 0 and fixed == {"sft.init"}):
            raise SettingsError(f"recipe[{i}] ({s.name}).overrides sets {sorted(fixed)[0]}: the recipe sets it (each stage "
                                "starts from the previous one's model, in output_dir/<name>)")
    first = next((i for i, s in enumerate(stages) if s.kind in ("sft", "grpo")), None)
    if first is None:
        raise SettingsError("recipe has only sasrec stages: it needs an sft stage to train the generative model")
    early_blend = next((i for i, s in enumerate(stages[:first]) if s.kind == "blend"), None)
    if early_blend is not None:
        raise SettingsError(f"recipe[{early_blend}] ({stages[early_blend].name}) is a blend stage before any generative "
                            "stage: a blend needs the model an sft or grpo stage trained before it")
    if stages[first].kind != "sft":
        raise SettingsError(f"recipe[{first}] is a grpo stage before any sft stage: a recipe trains its generative model "
                            "with SFT first (its start is the SFT model it trains)")


def stage_config(config_path: str, cli_overrides: list[str], stage: StageConfig, root: Path, start: Path | None,
                 sasrec: Path | None = None):
    """(config, notes) of one stage: the file, the stage's overrides, the command line's; its start
    model's prompt settings where neither sets them; `sasrec` (an earlier sasrec stage's model) as
    reward.sasrec_path where neither sets that."""
    placed = [f"output_dir={root / stage.name}"]
    if stage.kind == "sasrec":
        return load_config(config_path, stage.overrides + cli_overrides + placed + [f"sasrec.path={root / stage.name / 'model'}"]), []
    if sasrec is not None and "reward.sasrec_path" not in override_keys(stage.overrides + cli_overrides):
        placed.append(f"reward.sasrec_path={sasrec}")
    if start is not None:
        placed.append(f"{'sft.init' if stage.kind == 'sft' else 'model.path'}={start}")
    cfg = load_config(config_path, stage.overrides + cli_overrides + placed)
    key = "sft.init" if stage.kind == "sft" else "model.path"  # grpo and blend stages start from model.path
    model = start if start is not None else (None if cfg.sft.init == "tiny" else Path(cfg.sft.init))
    return adopt_model_settings(cfg, model, override_keys(stage.overrides + cli_overrides), key)


def train_stage(stage: StageConfig, cfg: Config, env: dist.DistEnv) -> tuple[Path, bool]:
    """(the model the stage hands on, whether a stop request ended it early)."""
    if stage.kind == "sasrec":
        from grporec.sasrec import train_and_save

        train_and_save(cfg, load_data_catalog(cfg.data), Path(cfg.sasrec.path), str(env.device))
        return Path(cfg.sasrec.path), False
    if stage.kind == "blend":
        from grporec.blend_stage import fit_blend_stage

        return fit_blend_stage(cfg, Path(cfg.output_dir), env), False
    if stage.kind == "sft":
        from grporec.sft import train_sft

        result = train_sft(cfg, env)
        return Path(cfg.output_dir) / "best", result["stopped"]
    from grporec.loop import train

    result = train(cfg, env)
    return latest_checkpoint(Path(cfg.output_dir)) / "policy", result["stopped"]


def run_stage(stage: StageConfig, cfg: Config, env: dist.DistEnv) -> dict | None:
    """Train and score one stage; its record (also in stage.json), or None when stopped."""
    out = Path(cfg.output_dir)
    t0 = time.perf_counter()
    model, stopped = train_stage(stage, cfg, env)
    if stopped:
        return None
    trained = time.perf_counter() - t0
    record = {"name": stage.name, "kind": stage.kind, "model": str(model), "seconds": {"train": trained}}
    ranks = {}
    for split in SPLITS:
        t = time.perf_counter()
        if stage.kind == "sasrec":
            m = score_sasrec(cfg, model, split, env)
        elif stage.kind == "blend":
            from grporec.blend_stage import score_blend_stage

            m = dict(score_blend_stage(cfg, model, split, env))
        else:
            with dist.autocast(env, cfg.train):  # bf16 on one CUDA device, as training scores
                m = evaluate_model(cfg, model, split, env, out / f"eval-{split}")
        ranks[split] = m.pop("ranks")
        record[split] = m
        record["seconds"][f"eval_{split}"] = time.perf_counter() - t
        print(f"[recipe] {stage.name} {split}: {format_metrics(m)}", flush=True)
    (out / "ranks.json").write_text(json.dumps(ranks))  # per-row first-hit ranks, for paired differences
    (out / STAGE_FILE).write_text(json.dumps(record, indent=1))
    return record


def score_sasrec(cfg: Config, model_dir: Path, split: str, env: dist.DistEnv) -> dict:
    """A sasrec stage's model on one split, as evaluate_model reports a generative one: HR/NDCG at
    cfg.eval.ks over the whole catalog, the seen/unseen rows, and each row's target rank."""
    from grporec.models.sasrec import SASRec
    from grporec.sasrec import evaluate_sasrec

    catalog = load_data_catalog(cfg.data)
    rows = load_split(cfg.data, split, catalog)[:cfg.eval.max_rows if cfg.eval.max_rows > 0 else None]
    return evaluate_sasrec(SASRec.load(model_dir, env.device), catalog, rows, ks=tuple(cfg.eval.ks),
                           transitions=train_transitions(load_split(cfg.data, "train", catalog)), with_ranks=True)


def stage_record(root: Path, stage: StageConfig) -> dict | None:
    path = root / stage.name / STAGE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def run_recipe(config_path: str, cli_overrides: list[str], cfg: Config, env: dist.DistEnv | None = None) -> dict | None:
    """Run (or resume) every stage of `cfg.recipe`; {stage: record}, or None when stopped early."""
    check_recipe(cfg.recipe)
    env = env or dist.DistEnv(0, 1, 0, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    root = Path(cfg.output_dir)
    ensure_synthetic_data(cfg)
    ensure_derived_data(cfg)
    records, start, sasrec = {}, None, None
    for i, stage in enumerate(cfg.recipe):
        done = stage_record(root, stage)
        if done is not None:
            print(f"[recipe] stage {i + 1}/{len(cfg.recipe)} {stage.name}: done ({done['model']})", flush=True)
        else:
            stage_cfg, notes = stage_config(config_path, cli_overrides, stage, root, start, sasrec)
            print(f"[recipe] stage {i + 1}/{len(cfg.recipe)} {stage.name} ({stage.kind}) -> {stage_cfg.output_dir}"
                  + (f"; from {start}" if start else ""), flush=True)
            for note in notes:
                print(f"[settings] {note}", flush=True)
            done = run_stage(stage, stage_cfg, env)
            if done is None:
                print(f"[recipe] stopped in stage {stage.name} (its checkpoint is written); run the same command to resume",
                      flush=True)
                return None
        records[stage.name] = done
        if stage.kind == "sasrec":
            sasrec = Path(done["model"])
        elif stage.kind != "blend":  # a blend hands on nothing: a later stage starts from the last generative model
            start = Path(done["model"])
    (root / "recipe_results.json").write_text(json.dumps(records, indent=1))
    print(results_table(records), flush=True)
    return records


def results_table(records: dict) -> str:
    """Each stage's valid and test HR/NDCG at 10 and 20 (those the beams reach), with the seen/unseen split."""
    first = next(iter(records.values()))["valid"]
    ks = [k for k in (10, 20) if f"ndcg@{k}" in first] or [max(int(key.split("@")[1]) for key in first if key.startswith("ndcg@"))]
    k = ks[0]
    cols = [f"NDCG@{k}"] + [f"HR@{x}" for x in ks] + [f"seen NDCG@{k}", f"unseen NDCG@{k}", "train s"]
    lines = ["\n| stage | split | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for name, r in records.items():
        for split in SPLITS:
            m = r[split]
            parts = [f"{m[part][f'ndcg@{k}']:.4f}" if part in m and m[part]["rows"] else "-" for part in ("seen", "unseen")]
            cells = [f"{m[f'ndcg@{k}']:.4f}"] + [f"{m[f'hr@{x}']:.4f}" for x in ks] + parts + [f"{r['seconds']['train']:.0f}"]
            lines.append(f"| {name} | {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "python -m grporec.recipe") -> int:
    def body(args_list):
        ap = cli.config_parser(prog, "Run a staged recipe (the config's recipe: list): each stage from the previous one's model.",
                               "python -m grporec.recipe --config configs/office-tiny.yaml seed=1 output_dir=runs/office-s1")
        args, cfg = cli.parse_config(ap, args_list, Config)
        cli.quiet_transformers()
        run_recipe(args.config, args.overrides, cfg)

    return cli.run(body, argv)


if __name__ == "__main__":
    sys.exit(main())
