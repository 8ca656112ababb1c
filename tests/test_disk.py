"""The disk a run writes to: a run that cannot keep its checkpoints fails before its first step, and
the earlier runs' sets a fresh start set aside are reported and, on request, deleted (grporec.disk)."""
import collections

import pytest

from conftest import ENV, tiny_loop_cfg
from grporec import disk, loop
from grporec.errors import SettingsError

Usage = collections.namedtuple("Usage", "total used free")


def test_the_checkpoint_estimate_is_what_a_checkpoint_takes(tiny_cfg, tiny_model_dir, tmp_path):
    h = loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "r", "train.max_steps=1"), ENV)
    from grporec.models.policy import load_policy

    model, _ = load_policy(tiny_model_dir)
    n = sum(p.numel() for p in model.parameters())
    # fp32 policy in HF format (4n), the same in the sharded state (4n), AdamW's two moments (8n), an fp32 reference (4n)
    assert disk.checkpoint_bytes(model, model) == 20 * n
    written = disk.tree_bytes(h["checkpoint"])  # + the tokenizer, config and trainer state: small beside the tensors
    assert 20 * n <= written <= 20 * n * 1.6, (written, 20 * n)


def test_a_run_that_cannot_fit_its_checkpoints_fails_before_its_first_step(tiny_cfg, tiny_model_dir, tmp_path, monkeypatch):
    out = tmp_path / "r"
    aside = out / "superseded-20261204-000000-abcd"
    aside.mkdir(parents=True)
    (aside / "weights").write_bytes(b"\0" * 3 * 2 ** 20)  # an earlier run's set: 3 MiB
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: Usage(10 ** 12, 10 ** 12 - 1000, 1000))  # 1,000 bytes free
    with pytest.raises(SettingsError, match=r"not enough disk for this run's checkpoints: [0-9.]+ GiB needed \(train.save_total_limit=2 "
                                            r"of ~[0-9.]+ GiB, and one more while the newest is written\), 0.0 GiB free; 1 superseded "
                                            r"set\(s\) of earlier runs hold 0.0 GiB in .*: train.drop_superseded=true deletes them"):
        loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=1"), ENV)
    assert not (out / "metrics.jsonl").exists() and not (out / "config.yaml").exists() and aside.is_dir()  # nothing lost


def test_superseded_sets_are_reported_and_deleted_only_on_request(tiny_cfg, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "r"
    loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=1"), ENV)
    loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=1", "train.resume=none"), ENV)  # sets the first aside
    sets = disk.superseded_sets(out)
    assert len(sets) == 1 and disk.tree_bytes(sets[0]) > 0
    capsys.readouterr()
    loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=1", "train.resume=none"), ENV)
    assert f"{out} holds 2 superseded checkpoint set(s) of earlier runs" in capsys.readouterr().out
    assert len(disk.superseded_sets(out)) == 2  # kept: nothing of another run is deleted unasked
    loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, out, "train.max_steps=1", "train.resume=none", "train.drop_superseded=true"), ENV)
    assert "deleted 3 superseded checkpoint set(s) of earlier runs" in capsys.readouterr().out  # the 2, and the one just set aside
    assert disk.superseded_sets(out) == []
