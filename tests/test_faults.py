"""Faults and wrong settings around a run: resume checks, config.yaml, full disks, pruning, SIGTERM in SFT."""
import json
from pathlib import Path

import pytest

from grporec import checkpoint, loop
from grporec.checkpoint import latest_checkpoint
from grporec.config import dump_config
from grporec.runlog import drop_after
from conftest import ENV, sigterm_after_steps, tiny_loop_cfg


def test_more_generations_than_catalog_sids_is_an_error(tiny_cfg, tiny_model_dir, tiny_catalog, tmp_path):
    n = len(tiny_catalog.sids)
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", f"rl.num_generations={n + 1}")
    with pytest.raises(ValueError, match=rf"rl.num_generations={n + 1} is more than the catalog's {n} distinct SIDs"):
        loop.train(cfg, ENV)


def test_a_failing_run_leaves_the_existing_config_alone(tiny_cfg, tiny_model_dir, tiny_catalog, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("the earlier run's config\n")
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", f"rl.num_generations={len(tiny_catalog.sids) + 1}")
    with pytest.raises(ValueError):
        loop.train(cfg, ENV)
    assert (tmp_path / "run" / "config.yaml").read_text() == "the earlier run's config\n"


def test_resume_checks_batch_settings_and_the_last_step(tiny_cfg, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=2"), ENV)
    with pytest.raises(ValueError, match=r"step-0000002 was written with rl.num_generations=8, this run has rl.num_generations=4"):
        loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=4", "rl.num_generations=4"), ENV)
    with pytest.raises(ValueError, match=r"train.prompts_per_step=4, this run has train.prompts_per_step=2: .* start afresh with "
                                         r"train.resume=none"):
        loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=4", "train.prompts_per_step=2"), ENV)
    with pytest.raises(ValueError, match=r"step-0000002 is at step 2, past this run's last step 1 \(train.max_steps / "
                                         r"train.epochs\): raise them to continue, or use train.resume=none"):
        loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=1"), ENV)
    capsys.readouterr()
    assert loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=2"), ENV)["history"] == []
    assert "nothing to do" in capsys.readouterr().out
    assert latest_checkpoint(out).name == "step-0000002"  # nothing pruned or rewritten


def test_drop_after_keeps_one_line_per_step(tmp_path):
    p = tmp_path / "metrics.jsonl"
    lines = [{"step": 1, "loss": 1}, {"step": 2, "loss": 2}, {"step": 2, "eval/hr@1": 0.5}, {"step": 3, "loss": 3}]
    p.write_text("".join(json.dumps(x) + "\n" for x in lines))
    drop_after(p, 2)  # resumed from the step-2 checkpoint: step 3 will be logged again
    assert [json.loads(x) for x in p.read_text().splitlines()] == lines[:3]


def test_a_full_disk_during_a_checkpoint_is_named_and_leaves_no_partial_directory(tiny_cfg, tiny_model_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=2", "train.save_steps=1"), ENV)

    def full(*a, **k):  # what torch.save raises when the disk fills mid-file
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4096 vs 3584")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(OSError, match=r"no space left on the device while writing .*step-0000003 \(the partial .*"
                                      r"\.tmp-step-0000003 was removed; the previous checkpoint is intact\)"):
        loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=3", "train.save_steps=1"), ENV)
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["step-0000001", "step-0000002"]


def test_pruning_never_leaves_a_half_deleted_checkpoint_under_its_name(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    (root / "step-0000001" / "policy").mkdir(parents=True)
    (root / "step-0000001" / "trainer_state.pt").write_text("x")
    seen = []

    def killed(path, ignore_errors=False):  # the process dies while deleting: the directory stays, renamed
        seen.append(Path(path).name)
        raise SystemExit("killed")

    monkeypatch.setattr(checkpoint.shutil, "rmtree", killed)
    with pytest.raises(SystemExit):
        checkpoint._remove(root / "step-0000001")
    assert seen == [".del-step-0000001"] and not (root / "step-0000001").exists()
    assert latest_checkpoint(tmp_path) is None  # a renamed leftover is never taken for a checkpoint


def test_sft_sigterm_writes_a_checkpoint_and_exits_zero(tiny_cfg, tmp_path):
    from test_sft import sft_cfg

    cfg = sft_cfg(tiny_cfg, tmp_path / "sft", "sft.train.max_steps=100000", "sft.train.eval_steps=100000")
    (tmp_path / "c.yaml").write_text(dump_config(cfg))
    log = tmp_path / "sft" / "metrics.jsonl"
    returncode, out = sigterm_after_steps("grporec.sft", tmp_path / "c.yaml", log)
    assert returncode == 0, out
    last = json.loads(log.read_text().splitlines()[-1])["step"]
    ckpt = latest_checkpoint(tmp_path / "sft")
    assert ckpt is not None and ckpt.name == f"step-{last:07d}" and (ckpt / "trainer_state.pt").is_file()
    assert "stopping at step" in out and "Traceback" not in out
    # output redirected to a pipe: no progress bars, and none of transformers' "Writing model shards"
    assert "\r" not in out and "Writing model shards" not in out and "Loading weights" not in out


def test_checkpoints_say_use_cache_true_and_a_bad_sft_init_names_sft_init(tiny_cfg, tiny_model_dir, tmp_path):
    from grporec import sft
    from grporec.models.policy import PolicyError
    from test_sft import sft_cfg

    r = loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=1"), ENV)
    saved = json.loads((r["checkpoint"] / "policy" / "config.json").read_text())
    assert saved["use_cache"] is True  # training ran with use_cache=False; the checkpoint is for generation
    with pytest.raises(PolicyError, match=r"model directory not found: .*nowhere; point sft.init at a local HF model"):
        sft.train_sft(sft_cfg(tiny_cfg, tmp_path / "sft", f"sft.init={tmp_path / 'nowhere'}"), ENV)


def test_sft_resume_errors_name_the_sft_train_keys(tiny_cfg, tmp_path):
    from grporec import sft
    from test_sft import sft_cfg

    out = tmp_path / "sft"
    sft.train_sft(sft_cfg(tiny_cfg, out, "sft.train.max_steps=2", "sft.train.eval_steps=2", "sft.train.save_steps=2"), ENV)
    with pytest.raises(ValueError, match=r"step-0000002 is at step 2, past this run's last step 1 \(sft.train.max_steps / "
                                         r"sft.train.epochs\): raise them to continue, or use sft.train.resume=none"):
        sft.train_sft(sft_cfg(tiny_cfg, out, "sft.train.max_steps=1"), ENV)
    with pytest.raises(ValueError, match=r"this run has seed=1: .* start afresh with sft.train.resume=none"):
        sft.train_sft(sft_cfg(tiny_cfg, out, "sft.train.max_steps=4", "seed=1"), ENV)
