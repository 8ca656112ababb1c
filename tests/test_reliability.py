"""Issue 20's defects, one test each (one process; the multi-rank ones are in test_ranks.py)."""
import configparser
import math
import re

import pytest

from grporec import commandline as cli, loop
from grporec.checkpoint import latest_checkpoint, run_id_of
from grporec.errors import SettingsError
from grporec.optim import cosine_with_warmup
from grporec.resume import SUPERSEDED
from conftest import ENV, ROOT, step_lines, tiny_loop_cfg


def test_a_fresh_run_in_a_used_directory_keeps_its_own_checkpoints_and_the_old_ones(tiny_cfg, tiny_model_dir, tmp_path):
    """Item 1. An old run leaves step-3 and step-4; a new run with train.resume=none writes step-1 and
    step-2 with save_total_limit=2. Before the fix pruning sorted every step-* by number and deleted
    the new run's checkpoints as soon as they were written, so train.resume=auto resumed the old run."""
    out = tmp_path / "run"
    old = tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=4", "train.save_steps=1", "train.save_total_limit=2")
    loop.train(old, ENV)
    old_params = (out / "checkpoints" / "step-0000004" / "policy" / "model.safetensors").read_bytes()
    new = tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=2", "train.save_steps=1", "train.save_total_limit=2",
                        "train.resume=none", "seed=1")
    summary = loop.train(new, ENV)
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["step-0000001", "step-0000002"]  # the new run's own, both kept
    assert latest_checkpoint(out) == summary["checkpoint"] == out / "checkpoints" / "step-0000002"
    [aside] = [p for p in out.iterdir() if p.name.startswith(SUPERSEDED)]
    assert sorted(p.name for p in (aside / "checkpoints").iterdir()) == ["step-0000003", "step-0000004"]
    assert (aside / "checkpoints" / "step-0000004" / "policy" / "model.safetensors").read_bytes() == old_params
    assert [r["step"] for r in step_lines(aside)] == [1, 2, 3, 4]  # the old run's log went with it
    assert [r["step"] for r in step_lines(out)] == [1, 2]
    assert run_id_of(out / "checkpoints" / "step-0000002") != run_id_of(aside / "checkpoints" / "step-0000004")


def test_resuming_an_earlier_checkpoint_sets_the_later_ones_aside(tiny_cfg, tiny_model_dir, tmp_path):
    """Item 1, the same hazard by another road: train.resume=<step-2> beside step-3 and step-4 of the
    same run; the later ones move aside, so the resumed run's step-3 is the latest and pruning keeps it."""
    out = tmp_path / "run"
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=4", "train.save_steps=1", "train.save_total_limit=5")
    loop.train(cfg, ENV)
    again = tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=4", "train.save_steps=1", "train.save_total_limit=5",
                          f"train.resume={out / 'checkpoints' / 'step-0000002'}", "train.stop_after=1")
    loop.train(again, ENV)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000001", "step-0000002", "step-0000003"]
    [aside] = [p for p in out.iterdir() if p.name.startswith(SUPERSEDED)]
    assert sorted(p.name for p in (aside / "checkpoints").iterdir()) == ["step-0000003", "step-0000004"]


def test_a_checkpoint_without_its_sharded_state_is_refused_by_name(tiny_cfg, tiny_model_dir, tmp_path):
    """Item 10: resuming reads policy and optimizer from the DCP `state/`; a checkpoint without one
    (from a grporec before it) is refused with the way out, and the run's checkpoints stay."""
    import shutil

    out = tmp_path / "run"
    loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=1"), ENV)
    shutil.rmtree(out / "checkpoints" / "step-0000001" / "state")
    with pytest.raises(FileNotFoundError, match=r"step-0000001: written by a grporec before sharded checkpoints \(no state/\); "
                                                r"resume it with that version, or start a new run from its policy/"):
        loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=2"), ENV)
    assert (out / "checkpoints" / "step-0000001" / "policy").is_dir()


def test_raising_max_steps_on_resume_keeps_the_schedule(tiny_cfg, tiny_model_dir, tmp_path, capsys):
    """Item 5. A 4-step run (warmup ceil(0.25 x 4) = 1 step, cosine to 0 at step 4) stopped after 2
    steps, resumed with train.max_steps=6: step 3 must use the 4-step curve's rate,
    lr x cos-mult(2, 1, 4) = lr x 0.5 (1 + cos(pi x 1/3)) = 0.75 lr, not the 6-step curve's
    0.5 (1 + cos(pi x 1/5)) = 0.905 lr. With train.schedule_steps=6 it follows the 6-step curve."""
    base = ("train.warmup_ratio=0.25", "train.save_steps=1", "train.save_total_limit=5")
    out = tmp_path / "run"
    loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=4", "train.stop_after=2", *base), ENV)
    lr = loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=6", "train.stop_after=1", *base), ENV)["history"][0]["lr"]
    peak = tiny_loop_cfg(tiny_cfg, tiny_model_dir, out).train.lr
    assert lr == pytest.approx(peak * cosine_with_warmup(2, 1, 4)) and cosine_with_warmup(2, 1, 4) == pytest.approx(0.75)
    assert "kept the checkpoint's horizon of 4 optimizer steps" in capsys.readouterr().out
    stretched = loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=6", "train.schedule_steps=6",
                                         "train.stop_after=1", *base), ENV)["history"][0]
    # step 4 (0-based optimizer step 3) of a 6-step schedule with warmup ceil(1.5) = 2: 0.5 (1 + cos(pi x 1/4))
    assert stretched["lr"] == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi / 4)))


def test_several_updates_per_rollout_count_and_log_every_optimizer_step(tiny_cfg, tiny_model_dir, tmp_path, monkeypatch):
    """Item 8. rl.num_iterations=2 with the second update of step 1 non-finite: one skipped optimizer
    step (not zero, as when only the last update was looked at... and not the other way round), and
    each update's lr logged: the schedule advances once per optimizer step that ran."""
    import grporec.grpo.update as update

    real = update.grpo_loss
    calls = {"n": 0}

    def flaky(*a, **k):
        loss, m = real(*a, **k)
        calls["n"] += 1
        return (loss * float("nan"), m) if calls["n"] in (3, 4) else (loss, m)  # 2 micro-batches an update: step 1, update 2

    monkeypatch.setattr(update, "grpo_loss", flaky)
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=2", "rl.num_iterations=2",
                        "train.warmup_ratio=0.5")
    h = loop.train(cfg, ENV)["history"]
    assert [x["skipped_steps"] for x in h] == [1, 1]
    assert [x["update1/stepped"] for x in h] == [1.0, 1.0] and [x["update2/stepped"] for x in h] == [0.0, 1.0]
    peak = cfg.train.lr  # 4 optimizer steps, warmup 2: rates 1/2, 2/2, then the cosine
    assert h[0]["update1/lr"] == pytest.approx(peak * 0.5) and h[0]["update2/lr"] == pytest.approx(peak)
    assert h[1]["update1/lr"] == pytest.approx(peak)  # update 2 of step 1 was skipped: the schedule did not move
    assert h[1]["lr"] == h[1]["update2/lr"] == pytest.approx(peak * cosine_with_warmup(2, 2, 4))


def test_user_errors_are_one_line_and_bugs_show_their_traceback(capsys):
    """Item 7. A SettingsError (what grporec raises for a bad setting) is one line; a ValueError from
    somewhere else (torch's own, a bug) keeps its traceback and says it is unexpected."""
    def user(_):
        raise SettingsError("train.lr must be > 0, got 0")

    def bug(_):
        import torch
        torch.zeros(2).view(3)  # RuntimeError from inside torch

    def value_bug(_):
        int("not a number")

    assert cli.run(user, []) == 1
    err = capsys.readouterr().err
    assert err == "error: train.lr must be > 0, got 0\n"
    for fn, kind in ((bug, "RuntimeError"), (value_bug, "ValueError")):
        assert cli.run(fn, []) == 1
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and f"error: unexpected {kind}" in err and "report it" in err


def test_the_declared_torch_floor_has_the_fsdp2_api():
    """Item 6. grporec imports fully_shard from torch.distributed.fsdp, public from torch 2.6."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    [torch_req] = [x for x in cfg["options"]["install_requires"].split("\n") if x.strip().startswith("torch")]
    floor = tuple(int(x) for x in re.search(r">=\s*([\d.]+)", torch_req).group(1).split(".")[:2])
    assert floor >= (2, 6), torch_req
    assert "from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard" in (ROOT / "grporec" / "dist.py").read_text()
