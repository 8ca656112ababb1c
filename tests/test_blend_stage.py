"""The blended recommender as a recipe stage (grporec.blend_stage) and `grporec eval|recommend --blend DIR`."""
import dataclasses
import json

import pytest

from conftest import ENV, tiny_loop_cfg
from grporec import evaluate, recipe, recommend
from grporec.config import StageConfig, dump_config
from grporec.data.load import load_data_catalog
from grporec.errors import SettingsError


def blend_recipe(tiny_cfg, tmp_path, stages):
    cfg = tiny_loop_cfg(tiny_cfg, tmp_path / "unused", tmp_path / "run", "sft.init=tiny", "sft.train.max_steps=2",
                        "sft.train.eval_steps=2", "sft.valid_max_rows=4", "eval.max_rows=8", "eval.test_beams=10",
                        "eval.ks=[5,10]", "sasrec.epochs=2", "sasrec.hidden=8", "blend.a_grid=[0.01,1e6]", "blend.w_grid=[0,1]")
    cfg = dataclasses.replace(cfg, recipe=stages)
    path = tmp_path / "recipe.yaml"
    path.write_text(dump_config(cfg))
    return path, cfg


def eval_valid(path, tmp_path, *args):
    out = tmp_path / f"ev{len(list(tmp_path.glob('ev*')))}"
    assert evaluate.main(["--config", str(path), "--split", "valid", "--max-rows", "8", "--beams", "10", "--ks", "5", "10",
                          "--out", str(out), *args]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_a_blend_stage_keeps_the_valid_best_pair_and_eval_reproduces_it(tiny_cfg, tmp_path):
    """[cf: sasrec, a: sft, b: blend]: b keeps a's model, cf's SASRec and, of the 2 x 2 grid, the
    (a, w) whose blend grporec eval scores best on valid (each pair scored here by grporec eval
    --blend-a/--blend-w, a naive reference); `grporec eval --blend run/b` without --model gives
    the stage's own valid and test figures."""
    path, cfg = blend_recipe(tiny_cfg, tmp_path, [StageConfig("cf", "sasrec"), StageConfig("a", "sft"), StageConfig("b", "blend")])
    records = recipe.run_recipe(str(path), [], cfg, ENV)
    run = tmp_path / "run"
    kept = json.loads((run / "b" / "blend.json").read_text())
    assert kept["model"] == records["a"]["model"] and kept["sasrec"] == str(run / "cf" / "model")
    by_pair = {(a, w): eval_valid(path, tmp_path, "--model", kept["model"], "--blend-a", str(a), "--blend-sasrec", kept["sasrec"],
                                  "--blend-w", str(w))["ndcg@10"] for a in (0.01, 1e6) for w in (0.0, 1.0)}
    best = max(by_pair.values())
    assert by_pair[(kept["a"], kept["w"])] == best == records["b"]["valid"]["ndcg@10"]
    assert eval_valid(path, tmp_path, "--blend", str(run / "b"))["ndcg@10"] == best
    out = tmp_path / "test-eval"
    assert evaluate.main(["--config", str(path), "--blend", str(run / "b"), "--split", "test", "--max-rows", "8",
                          "--ks", "5", "10", "--out", str(out)]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["beams"] == 10 and again["ndcg@10"] == records["b"]["test"]["ndcg@10"]
    assert len(json.loads((run / "b" / "ranks.json").read_text())["test"]) == 8


def test_a_blend_stage_without_sasrec_fits_a_alone_and_recommend_reads_it(tiny_cfg, tmp_path, capsys):
    """Without a SASRec the blend is the model and the counts: w = 0 and no SASRec kept; `grporec
    recommend --blend DIR` ranks with it and names its model."""
    path, cfg = blend_recipe(tiny_cfg, tmp_path, [StageConfig("a", "sft"), StageConfig("b", "blend")])
    recipe.run_recipe(str(path), [], cfg, ENV)
    kept = json.loads((tmp_path / "run" / "b" / "blend.json").read_text())
    assert kept["sasrec"] is None and kept["w"] == 0.0 and kept["a"] in (0.01, 1e6)
    capsys.readouterr()
    item = load_data_catalog(cfg.data).items[0].item_id
    assert recommend.main(["--config", str(path), "--blend", str(tmp_path / "run" / "b"), "--history", item, "--k", "3",
                           "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert len(lines[0]["recommendations"]) == 3


def test_blend_usage_errors(tiny_cfg, tmp_path, capsys):
    path, _ = blend_recipe(tiny_cfg, tmp_path, [StageConfig("a", "sft")])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "blend.json").write_text(json.dumps({"model": "m", "sasrec": None, "a": 1.0, "w": 0.0}))
    assert evaluate.main(["--config", str(path), "--blend", str(tmp_path / "b"), "--blend-a", "3"]) == 2
    assert "--blend DIR carries the blend's a, w and SASRec: not with --blend-a" in capsys.readouterr().err
    assert evaluate.main(["--config", str(path), "--blend", str(tmp_path / "nothing")]) != 0
    assert f"--blend {tmp_path / 'nothing'}: no blend.json there" in capsys.readouterr().err
    assert evaluate.main(["--config", str(path)]) == 2
    assert "--model DIR is required (or --blend DIR" in capsys.readouterr().err
    (tmp_path / "b" / "blend.json").write_text(json.dumps({"model": "m", "a": 1.0}))
    assert recommend.main(["--config", str(path), "--blend", str(tmp_path / "b"), "--history", "x"]) != 0
    assert "lacks ['sasrec', 'w']" in capsys.readouterr().err


@pytest.mark.parametrize("stages, says", [
    ([StageConfig("b", "blend"), StageConfig("a", "sft")], "recipe\\[0\\] \\(b\\) is a blend stage before any generative stage"),
    ([StageConfig("a", "sft"), StageConfig("b", "blend", ["model.path=x"])], "recipe\\[1\\] \\(b\\).overrides sets model.path"),
])
def test_a_recipe_with_a_misplaced_blend_stage_is_refused(stages, says):
    with pytest.raises(SettingsError, match=says):
        recipe.check_recipe(stages)
