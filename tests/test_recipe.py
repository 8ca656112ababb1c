"""Staged recipes (grporec.recipe) and the prompt settings a model carries (grporec.models.settings)."""
import dataclasses
import gzip
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ENV, sigterm_after_steps, subprocess_env, tiny_loop_cfg
from grporec import evaluate, recipe, recommend, sft
from grporec.config import StageConfig, dump_config
from grporec.data.load import load_data_catalog
from grporec.errors import SettingsError
from grporec.models.format import FormatError, record_format
from grporec.models.settings import adopt_model_settings, record_settings, recorded_settings, settings_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import recipe_seeds as RS  # noqa: E402


def test_a_model_records_its_prompt_settings_and_a_run_adopts_them_unless_set(tiny_cfg, tmp_path):
    trained = tiny_loop_cfg(tiny_cfg, tmp_path, tmp_path, "data.max_history=1", "data.prompt_text=compact")
    record_settings(tmp_path, settings_of(trained))
    assert recorded_settings(tmp_path) == {"data.prompt_format": "alpaca", "data.prompt_text": "compact", "data.max_history": 1,
                                           "data.max_prompt_tokens": 1024, "eval.prompt_style": "eval",
                                           "data.successor_hints": 0, "data.hint_counts": False}
    run = tiny_loop_cfg(tiny_cfg, tmp_path, tmp_path)  # the file's defaults: 10 items, MiniOneRec's words
    adopted, notes = adopt_model_settings(run, tmp_path, explicit=set())
    assert (adopted.data.max_history, adopted.data.prompt_text) == (1, "compact")
    assert adopted.train == run.train and adopted.data.info_file == run.data.info_file  # nothing else changes
    assert len(notes) == 2 and notes[0].startswith("data.prompt_text=compact, as ") and "the config had minionerec" in notes[0]
    kept, notes = adopt_model_settings(run, tmp_path, explicit={"data.max_history"})
    assert (kept.data.max_history, kept.data.prompt_text) == (10, "compact")
    assert f"data.max_history=10 as set, not the 1 that {tmp_path} was trained with" in notes
    same, notes = adopt_model_settings(adopted, tmp_path, explicit=set())
    assert same is adopted and notes == []
    unrecorded, notes = adopt_model_settings(run, tmp_path / "nothing", explicit=set())
    assert unrecorded is run and notes == []


def test_the_format_is_adopted_but_an_explicit_other_format_is_refused(tiny_cfg, tmp_path):
    record_settings(tmp_path, {**settings_of(tiny_cfg), "data.prompt_format": "chat"})
    adopted, _ = adopt_model_settings(tiny_cfg, tmp_path, explicit=set())
    assert adopted.data.prompt_format == "chat"
    with pytest.raises(FormatError, match="trained with data.prompt_format=chat, but this run has data.prompt_format=alpaca"):
        adopt_model_settings(tiny_cfg, tmp_path, explicit={"data.prompt_format"}, key="--model")
    record_format(tmp_path, "alpaca")  # what earlier grporec versions wrote: the format alone
    assert recorded_settings(tmp_path) == {"data.prompt_format": "alpaca"}
    (tmp_path / "grporec.json").write_text("[1]")
    with pytest.raises(FormatError, match="not a grporec record"):
        recorded_settings(tmp_path)


@pytest.fixture(scope="module")
def last_item_model(tiny_cfg, tmp_path_factory):
    """A one-step SFT model trained on compact last-item prompts."""
    out = tmp_path_factory.mktemp("mh1")
    cfg = tiny_loop_cfg(tiny_cfg, out / "best", out, "sft.init=tiny", "sft.train.max_steps=1", "sft.train.eval_steps=1",
                        "sft.valid_max_rows=4", "data.max_history=1", "data.prompt_text=compact")
    sft.train_sft(cfg, ENV)
    return out / "best"


def test_eval_and_recommend_read_a_model_with_its_own_prompts(tiny_cfg, last_item_model, tmp_path, capsys):
    plain = tmp_path / "plain.yaml"  # no prompt settings: 10-item MiniOneRec prompts unless the model says otherwise
    plain.write_text(dump_config(tiny_loop_cfg(tiny_cfg, last_item_model, tmp_path)))
    common = ["--model", str(last_item_model), "--beams", "5", "--max-rows", "6"]

    def predictions(name, *overrides):
        assert evaluate.main(["--config", str(plain), *common, "--out", str(tmp_path / name), *overrides]) == 0
        return json.loads((tmp_path / name / "predictions.json").read_text())

    adopted = predictions("adopted")
    assert "[settings] data.max_history=1, as" in capsys.readouterr().out
    assert adopted == predictions("explicit", "data.max_history=1", "data.prompt_text=compact")
    assert all(len(r["input"].split("><")) <= 5 for r in adopted)  # one SID (3-5 tokens) in each prompt
    overridden = predictions("ten", "data.max_history=10")
    assert "data.max_history=10 as set, not the 1" in capsys.readouterr().out
    assert [r["input"] for r in overridden] != [r["input"] for r in adopted]  # the override is obeyed

    history = [it.item_id for it in load_data_catalog(tiny_cfg.data).items[:3]]  # three items, oldest first

    def recs(*overrides):
        assert recommend.main(["--config", str(plain), "--model", str(last_item_model), "--history", *history, "--k", "5",
                               "--json", *overrides]) == 0
        return [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]

    assert recs() == recs("data.max_history=1", "data.prompt_text=compact")
    assert recs() != recs("data.max_history=10")


def recipe_config(tiny_cfg, tmp_path, *overrides):
    cfg = tiny_loop_cfg(tiny_cfg, tmp_path / "unused", tmp_path / "run", "sft.init=tiny", "sft.train.max_steps=2",
                        "sft.train.eval_steps=2", "sft.valid_max_rows=4", "train.max_steps=1", "eval.max_rows=6",
                        "eval.test_beams=5", *overrides)
    cfg = dataclasses.replace(cfg, recipe=[StageConfig("a", "sft", ["data.prompt_text=compact"]),
                                           StageConfig("b", "sft", ["data.max_history=1", "sft.train.lr=1e-4"]),
                                           StageConfig("g", "grpo", [])])
    path = tmp_path / "recipe.yaml"
    path.write_text(dump_config(cfg))
    return path, cfg


def test_a_recipe_runs_its_stages_in_order_and_resumes_where_it_stopped(tiny_cfg, tmp_path, monkeypatch, capsys):
    path, cfg = recipe_config(tiny_cfg, tmp_path)
    run = tmp_path / "run"
    real_train = recipe.train_stage
    stops = iter([False, False, True])  # a stop request during stage g, the GRPO stage

    def train_then_maybe_stop(stage, stage_cfg, env):
        model, _ = real_train(stage, stage_cfg, env)
        return model, next(stops)

    monkeypatch.setattr(recipe, "train_stage", train_then_maybe_stop)
    assert recipe.run_recipe(str(path), [], cfg, ENV) is None  # the whole recipe ends, not just the stage
    assert "stopped in stage g" in capsys.readouterr().out
    assert (run / "b" / "stage.json").is_file() and not (run / "g" / "stage.json").exists()

    monkeypatch.setattr(recipe, "train_stage", real_train)
    records = recipe.run_recipe(str(path), [], cfg, ENV)
    out = capsys.readouterr().out
    assert "stage 1/3 a: done" in out and "stage 2/3 b: done" in out and "stage 3/3 g (grpo)" in out
    assert list(records) == ["a", "b", "g"]
    b_cfg = (run / "b" / "config.yaml").read_text()
    assert f"init: {run / 'a' / 'best'}" in b_cfg and "prompt_text: compact" in b_cfg  # from a's model; b sets only max_history
    g_model = Path(records["g"]["model"])
    assert g_model == run / "g" / "checkpoints" / "step-0000001" / "policy"
    assert recorded_settings(g_model)["data.max_history"] == 1 and recorded_settings(g_model)["data.prompt_text"] == "compact"
    assert records["g"]["test"]["rows"] == 6 and len(json.loads((run / "g" / "ranks.json").read_text())["valid"]) == 6
    assert json.loads((run / "recipe_results.json").read_text())["b"]["valid"] == records["b"]["valid"]

    monkeypatch.setattr(recipe, "train_stage", lambda *a: pytest.fail("a finished recipe trains nothing"))
    assert recipe.run_recipe(str(path), [], cfg, ENV) == records

    # grporec eval on the GRPO checkpoint's directory (not its policy/), with the recipe's file and no overrides:
    # the stage's own model, prompts and figures
    checkpoint = run / "g" / "checkpoints" / "step-0000001"
    assert evaluate.main(["--config", str(path), "--model", str(checkpoint), "--split", "valid", "--beams", "5",
                          "--max-rows", "6", "--out", str(tmp_path / "ev")]) == 0
    assert "[settings] data.max_history=1, as" in capsys.readouterr().out
    again = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert again["model"] == str(checkpoint / "policy") and again["ndcg@5"] == records["g"]["valid"]["ndcg@5"]
    item = load_data_catalog(cfg.data).items[0].item_id
    assert recommend.main(["--config", str(path), "--model", str(checkpoint), "--history", item, "--k", "3", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert len(lines) == 1 and len(lines[0]["recommendations"]) == 3


def test_a_sasrec_stage_trains_the_teacher_that_later_stages_reward_with(tiny_cfg, tmp_path):
    """A recipe [cf: sasrec, a: sft, g: grpo with the teacher reward]: cf trains the config's SASRec,
    seeded like the recipe, into run/cf/model and is scored like a generative stage (its figures are
    evaluate_sasrec's on the same rows); the GRPO stage starts from a (not from cf) and its
    reward.sasrec_path is cf's model, set by the recipe."""
    from grporec.models.sasrec import SASRec
    from grporec.sasrec import evaluate_sasrec

    path, cfg = recipe_config(tiny_cfg, tmp_path, "sasrec.epochs=2", "sasrec.hidden=8")
    cfg = dataclasses.replace(cfg, recipe=[StageConfig("cf", "sasrec"), StageConfig("a", "sft"),
                                           StageConfig("g", "grpo", ["reward.names=[rule,teacher]", "reward.teacher_a=3"])])
    path.write_text(dump_config(cfg))
    run = tmp_path / "run"
    records = recipe.run_recipe(str(path), [], cfg, ENV)
    assert records["cf"]["model"] == str(run / "cf" / "model")
    catalog = load_data_catalog(cfg.data)
    from grporec.data.load import load_split
    from grporec.metrics import train_transitions
    direct = evaluate_sasrec(SASRec.load(run / "cf" / "model"), catalog, load_split(cfg.data, "valid", catalog)[:6],
                             ks=tuple(cfg.eval.ks), transitions=train_transitions(load_split(cfg.data, "train", catalog)))
    assert records["cf"]["valid"] == direct and records["cf"]["valid"]["rows"] == 6
    assert len(json.loads((run / "cf" / "ranks.json").read_text())["test"]) == 6
    g_cfg = (run / "g" / "config.yaml").read_text()
    assert f"sasrec_path: {run / 'cf' / 'model'}" in g_cfg and f"path: {run / 'a' / 'best'}" in g_cfg
    assert "rewards/teacher" in (run / "g" / "metrics.jsonl").read_text()


@pytest.mark.parametrize("stages, says", [
    ([StageConfig("cf", "sasrec")], "only sasrec stages"),
    ([StageConfig("cf", "sasrec"), StageConfig("g", "grpo")], "recipe\\[1\\] is a grpo stage before any sft"),
    ([StageConfig("cf", "sasrec", ["sasrec.path=x"]), StageConfig("a", "sft")], "recipe\\[0\\] \\(cf\\).overrides sets sasrec.path"),
])
def test_a_recipe_with_sasrec_stages_that_cannot_run_is_refused(stages, says):
    with pytest.raises(SettingsError, match=says):
        recipe.check_recipe(stages)


def test_a_stop_signal_ends_the_recipe_command_and_the_same_command_resumes(tiny_cfg, tmp_path):
    path, _ = recipe_config(tiny_cfg, tmp_path, "sft.train.max_steps=40", "sft.train.eval_steps=40")
    returncode, out = sigterm_after_steps("grporec.recipe", path, tmp_path / "run" / "a" / "metrics.jsonl")
    assert returncode == 0, out
    assert "stopped in stage a" in out and not (tmp_path / "run" / "b").exists()
    assert (tmp_path / "run" / "a" / "checkpoints").is_dir()
    again = subprocess.run([sys.executable, "-m", "grporec.recipe", "--config", str(path)], env=subprocess_env(),
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "resumed from" in again.stdout and (tmp_path / "run" / "g" / "stage.json").is_file()
    steps = [json.loads(x)["step"] for x in (tmp_path / "run" / "a" / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert steps == list(range(1, 41))  # stage a went on from its checkpoint: every step once


@pytest.mark.parametrize("stages, says", [
    ([], "recipe is empty"),
    ([StageConfig("a", "sft"), StageConfig("a", "grpo")], "recipe\\[1\\].name 'a' is used by two stages"),
    ([StageConfig("g", "grpo")], "recipe\\[0\\] is a grpo stage"),
    ([StageConfig("a", "sft"), StageConfig("g", "grpo", ["model.path=x"])], "recipe\\[1\\] \\(g\\).overrides sets model.path"),
    ([StageConfig("a/b", "sft")], "no '/'"),
    ([StageConfig("a", "sft", ["lr"])], "'lr' is not section.key=value"),
])
def test_a_recipe_that_cannot_run_is_refused_naming_the_stage(stages, says):
    with pytest.raises(SettingsError, match=says):
        recipe.check_recipe(stages)


def test_the_seed_benchmark_names_rows_and_pairs_differences_by_row():
    stages = [StageConfig("suffix", "sft"), StageConfig("last_item", "sft"), StageConfig("grpo", "grpo")]
    assert RS.stage_rows(stages) == {"sft_suffix": "suffix", "sft": "last_item", "grpo": "grpo"}
    assert RS.stage_rows([StageConfig("cf", "sasrec"), *stages, StageConfig("b", "blend")]) == {
        "stage_cf": "cf", "sft_suffix": "suffix", "sft": "last_item", "grpo": "grpo", "stage_b": "b"}
    # two seeds, three rows; ranks -1 = a miss. NDCG@10 of a rank r: 1 / log2(r + 2).
    a, b = [0, 5, -1], [1, 0, 2]  # per row: b - a = 1/log2(3) - 1, 1 - 1/log2(7), 1/log2(4) - 0
    d = [1 / math.log2(3) - 1, 1 - 1 / math.log2(7), 0.5]
    mean = sum(d) / 3
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / 2 / 3)
    ranks = {"sft": {"valid": [a, a], "test": [a, b]}, "grpo": {"valid": [b, b], "test": [b, b]}}
    out = RS.differences(ranks, [0, 1])
    assert list(out) == ["grpo - sft"]  # pairs whose rows are missing are left out
    valid = out["grpo - sft"]["valid"]["ndcg@10"]
    assert valid["per_seed"][0]["diff"] == pytest.approx(mean, abs=1e-12) and valid["per_seed"][0]["se"] == pytest.approx(se, abs=1e-12)
    assert valid["spread_sd"] == 0.0
    test = out["grpo - sft"]["test"]
    assert test["ndcg@10"]["mean"] == pytest.approx(mean / 2, abs=1e-12)  # seed 1 compares b with itself
    assert test["hr@10"]["per_seed"][0]["diff"] == pytest.approx(1 / 3, abs=1e-12)  # hits: a 2 of 3, b 3 of 3
    assert test["hr@10"]["spread_sd"] == pytest.approx(math.sqrt(2 * (1 / 6) ** 2), abs=1e-12)  # values 1/3 and 0


def test_the_seed_benchmark_runs_only_the_blends_a_seed_lacks(tmp_path):
    """Per seed: the blend of the final SFT and GRPO models with the counts (`blend_<row>.json`) and
    with SASRec in the prior too (`blend_sasrec_<row>.json`), each once; a rerun adds what is missing."""
    from types import SimpleNamespace

    cfg = SimpleNamespace(recipe=[StageConfig("suffix", "sft"), StageConfig("last_item", "sft"), StageConfig("grpo", "grpo")])
    args = SimpleNamespace(blend=True, blend_sasrec=True, blend_counts=True)
    (tmp_path / "blend_sft.json").write_text("{}")
    assert RS.blend_files(args, cfg, tmp_path) == [("grpo", tmp_path / "blend_grpo.json", False),
                                                   ("sft", tmp_path / "blend_sasrec_sft.json", True),
                                                   ("grpo", tmp_path / "blend_sasrec_grpo.json", True)]  # sft_suffix has none
    args.blend_counts = False  # --no-blend-counts: only the blends with SASRec
    assert RS.blend_files(args, cfg, tmp_path) == [("sft", tmp_path / "blend_sasrec_sft.json", True),
                                                   ("grpo", tmp_path / "blend_sasrec_grpo.json", True)]
    args.blend_counts, args.blend_sasrec = True, False
    assert RS.blend_files(args, cfg, tmp_path) == [("grpo", tmp_path / "blend_grpo.json", False)]
    args.blend = False
    assert RS.blend_files(args, cfg, tmp_path) == []


def test_the_seed_benchmark_reports_another_recipes_runs_as_base_rows_paired_with_its_own(tmp_path, monkeypatch):
    """--against CONFIG: that recipe's stage and blend rows of the same seeds, named base_<row>, each
    paired with this recipe's rows over the same users (a held-back variant against the all-rows SFT)."""
    from types import SimpleNamespace

    def stage(d: Path, name: str, valid: list[int], test: list[int]) -> None:
        (d / name).mkdir(parents=True)
        (d / name / "stage.json").write_text(json.dumps({"valid": {"ndcg@10": 0.0, "hr@10": 0.0, "hr@20": 0.0},
                                                         "test": {"ndcg@10": 0.0, "hr@10": 0.0, "hr@20": 0.0}, "seconds": 1}))
        (d / name / "ranks.json").write_text(json.dumps({"valid": valid, "test": test}))

    (tmp_path / "v.csv").write_text("user_id,history,target\n1,a,b\n")
    (tmp_path / "t.csv").write_text("user_id,history,target\n1,a b,c\n")
    data = SimpleNamespace(valid_file=str(tmp_path / "v.csv"), test_file=str(tmp_path / "t.csv"))
    base = SimpleNamespace(recipe=[StageConfig("suffix", "sft"), StageConfig("g", "grpo")], output_dir=str(tmp_path / "base"), data=data)
    for seed in (0, 1):
        stage(RS.seed_dir(tmp_path / "base", seed), "suffix", [0, -1], [1, -1])  # seed 1's grpo is missing
    stage(RS.seed_dir(tmp_path / "base", 0), "g", [0, 0], [0, 0])
    rows, ranks, _, missing = RS.collect(base, tmp_path / "base", [0, 1], classical=False)
    # no baselines: this recipe's own rows only; its blends were not run here
    assert list(rows) == ["sft"] and missing == ["grpo", "blend_sft", "blend", "blend_sasrec_sft", "blend_sasrec"]
    monkeypatch.setattr(RS, "load_config", lambda path: base)
    mine = {"markov": {"valid": [[0, 0]] * 2, "test": [[0, 0]] * 2}, "grpo": {"valid": [[0, 0]] * 2, "test": [[0, 1]] * 2}}
    cfg = SimpleNamespace(data=data)
    assert RS.load_base("base.yaml", cfg, [0, 1]) is base
    _, ranks2, missing2 = RS.with_base(base, [0, 1], {}, mine, [])
    assert missing2 == ["base_" + m for m in missing] and ranks2["base_sft"] == ranks["sft"]
    out = RS.differences(ranks2, [0, 1])
    assert list(out) == ["grpo - markov", "grpo - base_sft"]  # the claimed pairs, then those against the base
    # valid, per user: grpo rank 0 against base rank 0 (0), and rank 0 against a miss (1): mean 0.5
    assert out["grpo - base_sft"]["valid"]["ndcg@10"]["mean"] == pytest.approx(0.5, abs=1e-12)
    # test: ranks 0 vs 1 (1 - 1/log2(3)), 1 vs miss (1/log2(3)): mean 0.5 too
    assert out["grpo - base_sft"]["test"]["ndcg@10"]["mean"] == pytest.approx(0.5, abs=1e-12)
    (tmp_path / "copy.csv").write_bytes((tmp_path / "v.csv").read_bytes())  # the same rows at another path: paired
    cfg.data = SimpleNamespace(valid_file=str(tmp_path / "copy.csv"), test_file=data.test_file)
    assert RS.load_base("base.yaml", cfg, [0, 1]) is base
    (tmp_path / "copy.csv").write_text("user_id,history,target\n2,a,b\n")  # one byte differs: other rows
    with pytest.raises(SystemExit, match="contents differ: paired differences need the same valid rows"):
        RS.load_base("base.yaml", cfg, [0, 1])
    cfg.data = SimpleNamespace(valid_file=str(tmp_path / "absent.csv"), test_file=data.test_file)
    with pytest.raises(SystemExit, match="absent.csv is absent"):
        RS.load_base("base.yaml", cfg, [0, 1])
    mine["markov"]["test"] = [[0, 0, 0]] * 2
    with pytest.raises(SystemExit, match="different number of test rows"):
        RS.with_base(base, [0, 1], {}, mine, [])


def test_the_seed_benchmark_pairs_its_runs_with_a_recorded_recipes_ranks(tmp_path):
    """--against RESULTS: a results file and the per-user ranks written beside it stand in for runs whose
    models are gone (a new session): the seeds asked for, in their order, paired over the same users."""
    from types import SimpleNamespace

    (tmp_path / "v.csv").write_text("user_id,history,target\n1,a,b\n2,a,c\n")
    (tmp_path / "t.csv").write_text("user_id,history,target\n1,a b,c\n2,a c,d\n")
    cfg = SimpleNamespace(data=SimpleNamespace(valid_file=str(tmp_path / "v.csv"), test_file=str(tmp_path / "t.csv")))
    # a recorded 3-seed run: its baselines (not carried over) and its own sft row, with an earlier base of its own
    ranks = {"markov": {"valid": [[0, 0]] * 3, "test": [[0, 0]] * 3},
             "sft": {"valid": [[0, -1], [1, -1], [-1, -1]], "test": [[2, 2], [0, 0], [1, 1]]}}
    rows = {n: {split: {"ndcg@10": [0.1, 0.2, 0.3]} for split in ("valid", "test")} for n in ("markov", "sft", "base_sft")}
    out = tmp_path / "recorded.json"
    out.write_text(json.dumps({"rows": rows, "missing_rows": ["grpo", "base_grpo"]}))
    written = RS.write_ranks(out, cfg, [0, 1, 2], ranks)
    assert written == tmp_path / "recorded.ranks.json.gz"
    assert written.read_bytes() == RS.write_ranks(out, cfg, [0, 1, 2], ranks).read_bytes()  # same runs, same bytes

    base = RS.load_base(str(out), cfg, [2, 0])
    mine = {"markov": {"valid": [[0, 0]] * 2, "test": [[0, 0]] * 2}, "grpo": {"valid": [[0, 0]] * 2, "test": [[0, 1]] * 2}}
    rows2, ranks2, missing2 = RS.with_base(base, [2, 0], {}, mine, [])
    assert list(rows2) == ["base_sft"] and missing2 == ["base_grpo"]  # no baselines, no base of the base
    assert rows2["base_sft"]["valid"]["ndcg@10"] == [0.3, 0.1]  # seed 2, then seed 0
    assert ranks2["base_sft"]["valid"] == [[-1, -1], [0, -1]]
    diff = RS.differences(ranks2, [2, 0])["grpo - base_sft"]["valid"]["ndcg@10"]
    # seed 2: both users go from a miss to rank 0: +1 each, mean 1; seed 0: 0 and +1, mean 0.5
    assert [d["diff"] for d in diff["per_seed"]] == pytest.approx([1.0, 0.5], abs=1e-12)

    with pytest.raises(SystemExit, match=r"recorded seeds \[0, 1, 2\], not \[3\]"):
        RS.load_base(str(out), cfg, [0, 3])
    (tmp_path / "t.csv").write_text("user_id,history,target\n1,a b,c\n2,a c,e\n")  # the test rows changed since
    with pytest.raises(SystemExit, match="need the same test rows"):
        RS.load_base(str(out), cfg, [0])
    # a ranks file written before digests were recorded: the recorded paths' contents here decide
    payload = json.loads(gzip.decompress(written.read_bytes()))
    del payload["valid_sha256"], payload["test_sha256"]
    written.write_bytes(gzip.compress(json.dumps(payload).encode()))
    assert isinstance(RS.load_base(str(out), cfg, [0]), RS.Recorded)
    written.unlink()
    with pytest.raises(SystemExit, match="recorded.ranks.json.gz beside it"):
        RS.load_base(str(out), cfg, [0])


def test_the_seed_benchmark_records_the_environment_its_figures_depend_on():
    """Trained models differ across CPUs' vector kernels and library versions, so every report names them."""
    import importlib.metadata

    env = RS.environment()
    assert env["torch"] == importlib.metadata.version("torch") and env["transformers"] == importlib.metadata.version("transformers")
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and env["cpu"]
    assert env["commit"] is None or len(env["commit"]) == 40


def test_stage_curves_keep_each_stages_record_and_its_evaluations(tmp_path):
    import stage_curves

    d = tmp_path / "seeds" / "seed1" / "suffix"
    d.mkdir(parents=True)
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"step": 1, "loss": 3.0}, {"step": 2, "eval/valid_ndcg@10": 0.01, "eval/valid_loss": 2.5},
        {"step": 3, "loss": 2.0}, {"step": 4, "eval/valid_ndcg@10": 0.02, "eval/valid_loss": 2.4}]) + "\n")
    (d / "stage.json").write_text(json.dumps({"test": {"ndcg@10": 0.05}}))
    got = stage_curves.gather(tmp_path, ["suffix", "grpo"], [1])
    # training steps are left out, evaluations keep their step and lose the prefix; a stage not run is empty
    assert got["1"]["suffix"]["curve"] == [{"step": 2, "valid_ndcg@10": 0.01, "valid_loss": 2.5},
                                           {"step": 4, "valid_ndcg@10": 0.02, "valid_loss": 2.4}]
    assert got["1"]["suffix"]["record"] == {"test": {"ndcg@10": 0.05}}
    assert got["1"]["grpo"] == {"record": None, "curve": []}
