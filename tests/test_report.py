"""The run report (figures + report.md) from recorded run directories, and TensorBoard logging."""
import json
import sys

import pytest

from grporec import loop, report
from conftest import ENV, tiny_loop_cfg


def recorded_run(root, lr, steps=12):
    """A run directory as the loop writes it: metrics.jsonl (steps and evaluations), config.yaml, an evaluation."""
    root.mkdir(parents=True)
    lines = []
    for s in range(1, steps + 1):
        lines.append({"step": s, "loss": 0.01 * s, "reward": 0.1 + 0.01 * s, "rewards/rule": 0.05, "rewards/prefix": 0.2,
                      "frac_reward_zero_std": 0.5 - 0.01 * s, "frac_groups_without_hit": 0.6, "kl": 0.0 if s == 1 else 0.1 * s,
                      "grad_norm": 0.3, "completions_per_s": 500.0, "time/rollout": 0.1, "time/policy": 0.2,
                      "time/reference": 0.05, "time/reward": 0.001, "time/optimizer": 0.01})
        if s % 6 == 0:
            lines.append({"step": s, "eval/hr@10": 0.1 + s / 100, "eval/ndcg@10": 0.05 + s / 200})
    (root / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (root / "config.yaml").write_text(f"train:\n  lr: {lr}\n  max_steps: {steps}\noutput_dir: {root}\n")
    (root / "eval-test").mkdir()
    final = {"split": "test", "beams": 20, "hr@1": 0.05, "hr@10": 0.125 + lr, "ndcg@10": 0.0625, "rows": 100}
    (root / "eval-test" / "metrics.json").write_text(json.dumps(final))
    return final


def test_report_figures_and_table_from_recorded_runs(tmp_path):
    pytest.importorskip("matplotlib")
    a = recorded_run(tmp_path / "a", 0.001)
    b = recorded_run(tmp_path / "b", 0.0003)
    path = report.write_report([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    md = path.read_text()
    for name in ("reward.png", "signal.png", "kl.png", "grad_norm.png", "loss.png", "speed.png", "eval.png", "phases.png"):
        assert (tmp_path / "out" / name).stat().st_size > 5000, name  # a real picture, not an empty canvas
        assert f"]({name})" in md
    # runs are labelled by what differs in their configs (lr), not by the paths or output_dir
    assert "**lr=0.001**" in md and "**lr=0.0003**" in md
    # the table's numbers are the JSON's
    row = next(x for x in md.splitlines() if x.startswith("| lr=0.001: eval-test"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    header = [c.strip() for c in next(x for x in md.splitlines() if x.startswith("| run: evaluation")).strip("|").split("|")]
    assert float(cells[header.index("HR@10")]) == pytest.approx(a["hr@10"], abs=5e-5)
    assert float(cells[header.index("NDCG@10")]) == pytest.approx(a["ndcg@10"], abs=5e-5)
    last_valid = next(x for x in md.splitlines() if x.startswith("| lr=0.0003: valid at step 12"))
    assert "0.2200" in last_valid and "0.1100" in last_valid  # eval/hr@10 = 0.1 + 12/100, ndcg@10 = 0.05 + 12/200
    assert b["hr@10"] != a["hr@10"]


def test_report_without_matplotlib_says_how_to_install(tmp_path, monkeypatch, capsys):
    recorded_run(tmp_path / "a", 0.001)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert report.main([str(tmp_path / "a"), "--out", str(tmp_path / "out")]) == 1
    assert 'error: the report needs matplotlib: pip install -e ".[plot]"' in capsys.readouterr().err


def test_report_names_a_directory_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert report.main([str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 1
    assert "no metrics.jsonl here or in grpo/ or sft/" in capsys.readouterr().err


def test_tensorboard_logging_and_its_install_hint(tiny_cfg, tiny_model_dir, tmp_path, monkeypatch):
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=1", "train.report_to=[jsonl,tensorboard]")
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as on a machine without tensorboard
    with pytest.raises(ValueError, match=r'train.report_to has "tensorboard", which needs the tensorboard package'):
        loop.train(cfg, ENV)
    assert not (tmp_path / "run" / "config.yaml").exists()  # refused before anything was written
    bad = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.report_to=[mlflow]")
    with pytest.raises(ValueError, match=r"train.report_to: unknown 'mlflow'; choose from \['jsonl', 'tensorboard', 'wandb'\]"):
        loop.train(bad, ENV)


def test_tensorboard_event_file_is_written(tiny_cfg, tiny_model_dir, tmp_path):
    pytest.importorskip("tensorboard")
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=2", "train.report_to=[jsonl,tensorboard]")
    loop.train(cfg, ENV)
    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2  # the JSONL is still written


class FakeWandb:
    """Stands in for the wandb module: records init's arguments, every log call and finish."""

    def __init__(self):
        self.inits, self.logs, self.finished = [], [], 0

    def init(self, **kwargs):
        self.inits.append(kwargs)
        return self

    def log(self, data, step):
        self.logs.append((step, dict(data)))

    def finish(self):
        self.finished += 1


def test_wandb_gets_every_step_number_the_jsonl_has_and_the_config(tiny_cfg, tiny_model_dir, tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    run = tmp_path / "run"
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, run, "train.max_steps=1", "train.save_steps=1", "train.report_to=[jsonl,wandb]")
    loop.train(cfg, ENV)
    (init,) = fake.inits
    assert init["dir"] == str(run) and init["name"] == "run" and init["resume"] == "allow" and init["job_type"] == "grpo"
    assert init["config"]["rl"]["num_generations"] == cfg.rl.num_generations and init["config"]["train"]["lr"] == cfg.train.lr
    assert init["id"] == (run / "wandb-run-id").read_text().strip()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    numeric = [{k: v for k, v in r.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)} for r in lines]
    assert fake.logs == [(r["step"], n) for r, n in zip(lines, numeric)]  # the same numbers, step by step
    assert [s for s, _ in fake.logs] == [1] and "loss" in fake.logs[0][1] and fake.finished == 1
    # a resumed run logs on into the same wandb run, from the step after its checkpoint
    more = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", more)
    loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, run, "train.max_steps=2", "train.report_to=[jsonl,wandb]"), ENV)
    assert more.inits[0]["id"] == init["id"] and [s for s, _ in more.logs] == [2]
    # a fresh start (step 0) gets a new id even where an old one is recorded
    from grporec.runlog import wandb_run

    wandb_run(run, 0, None, "sft")
    assert more.inits[1]["id"] != init["id"] == more.inits[0]["id"] and more.inits[1]["config"] == {}


def test_wandb_missing_is_refused_with_the_install_command(tiny_cfg, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as on a machine without wandb
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=1", "train.report_to=[jsonl,wandb]")
    with pytest.raises(ValueError, match=r'train.report_to has "wandb", which needs the wandb package: pip install wandb'):
        loop.train(cfg, ENV)
    assert not (tmp_path / "run" / "config.yaml").exists()  # refused before anything was written


def test_wandb_offline_run_is_written(tiny_cfg, tiny_model_dir, tmp_path, monkeypatch):
    """With the real package (an optional extra; skipped where it is not installed) in offline mode."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, run, "train.max_steps=2", "train.report_to=[jsonl,wandb]"), ENV)
    runs = list((run / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].name.endswith((run / "wandb-run-id").read_text().strip())
    assert list(runs[0].glob("*.wandb")) and list(runs[0].glob("*.wandb"))[0].stat().st_size > 0
