"""The extension point for loss variants: `rl.micro_loss(policy, mb, cfg)` and its MicroBatch record."""
import pytest
import torch

from grporec import loop, rl
from conftest import ENV, tiny_loop_cfg


def test_a_loss_variant_sees_targets_and_its_extra_metrics_are_logged(tiny_cfg, tiny_model_dir, tmp_path, monkeypatch):
    real = rl.micro_loss
    seen = []

    def variant(policy, mb, cfg):
        loss, m = real(policy, mb, cfg)
        G = cfg.rl.num_generations
        # the record carries each prompt's own target completion: injected rows are exactly it
        for row in mb.injected.nonzero().squeeze(1).tolist():
            assert torch.equal(mb.completion_ids[row], mb.target_ids[row // G])
            assert torch.equal(mb.completion_mask[row], mb.target_mask[row // G])
        seen.append(int(mb.injected.sum()))
        # a new metric: target tokens per prompt (3 SID tokens, newline, EOS = 5 in the tiny catalog)
        return loss, {**m, "target_tokens": mb.target_mask.sum() / len(mb.samples)}

    monkeypatch.setattr(rl, "micro_loss", variant)
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=2", "rl.add_gt=true")
    history = loop.train(cfg, ENV)["history"]
    assert all(h["target_tokens"] == pytest.approx(5.0) for h in history)  # averaged over micro-batches and logged
    assert all("kl" in h and "policy_term" in h for h in history)  # the loss's own metrics are still there
    assert sum(seen) > 0  # the injected-row check above ran on real rows


def test_sibling_advantages_run_through_the_loop(tiny_cfg, tiny_model_dir, tmp_path, monkeypatch):
    seen = []
    real = rl.micro_loss

    def spy(policy, mb, cfg):
        seen.append(tuple(mb.advantages.shape))
        return real(policy, mb, cfg)

    monkeypatch.setattr(rl, "micro_loss", spy)
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=2", "rl.advantage=sibling")
    history = loop.train(cfg, ENV)["history"]
    assert all(len(s) == 2 and s[1] == 5 for s in seen)  # [rows, L]: one advantage per token (3 levels, newline, EOS)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    with pytest.raises(ValueError, match="rl.advantage=sibling gives per-token advantages; rl.loss_type=sequence"):
        loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "b", "rl.advantage=sibling",
                                 "rl.loss_type=sequence"), ENV)
