"""sft.dropout: residual dropout where GPT-2 and SASRec have it, in training mode only."""
import copy
import dataclasses

import pytest
import torch
from torch import nn

from grporec import sft
from grporec.config import ConfigError
from grporec.errors import SettingsError
from grporec.models.dropout import add_residual_dropout
from grporec.models.recompute import enable_activation_checkpointing
from conftest import tiny_loop_cfg
from test_decode import tiny_lm

IDS = torch.tensor([[5, 9, 2, 7, 11, 3], [4, 4, 8, 1, 6, 10]])


def logits(model) -> torch.Tensor:
    return model(input_ids=IDS, use_cache=False).logits


class _DropFirst(nn.Module):
    """The naive reference: a module followed by nn.Dropout on its (first) output."""

    def __init__(self, inner: nn.Module, p: float):
        super().__init__()
        self.inner, self.drop = inner, nn.Dropout(p)

    def forward(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        return (self.drop(out[0]),) + tuple(out[1:]) if isinstance(out, tuple) else self.drop(out)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_hooks_equal_dropout_modules_inserted_by_hand(arch):
    hooked = tiny_lm(3, arch).train()
    assert len(add_residual_dropout(hooked, 0.3)) == 1 + 2 * 2  # embeddings + (attention, MLP) x 2 layers
    ref = copy.deepcopy(tiny_lm(3, arch)).train()
    ref.model.embed_tokens = _DropFirst(ref.model.embed_tokens, 0.3)
    for layer in ref.model.layers:
        layer.self_attn, layer.mlp = _DropFirst(layer.self_attn, 0.3), _DropFirst(layer.mlp, 0.3)
    # the same RNG stream drawn in the same order (embeddings, then each layer's attention and MLP)
    torch.manual_seed(0)
    got = logits(hooked)
    torch.manual_seed(0)
    want = logits(ref)
    assert torch.equal(got, want)
    torch.manual_seed(1)
    assert not torch.allclose(logits(hooked), got)  # another seed, other masks


def test_evaluation_mode_computes_exactly_the_model_without_dropout():
    plain = tiny_lm(4)
    hooked = copy.deepcopy(plain)
    add_residual_dropout(hooked, 0.5)
    assert torch.equal(logits(hooked.eval()), logits(plain.eval()))
    assert not torch.allclose(logits(hooked.train()), logits(plain.train()))
    hooked.eval()
    assert torch.equal(logits(hooked), logits(plain))  # and back: nothing of training mode is left


def test_zero_adds_no_hooks_and_one_is_refused():
    model = tiny_lm(5)
    assert add_residual_dropout(model, 0.0) == []
    with pytest.raises(SettingsError, match=r"sft.dropout must be in \[0, 1\), got 1.0"):
        add_residual_dropout(model, 1.0)


def test_recomputed_layers_draw_the_masks_of_their_first_forward():
    # activation checkpointing recomputes each layer in the backward: its dropout masks must be the
    # forward's, or the gradient would belong to another network
    grads = []
    for checkpointed in (False, True):
        model = tiny_lm(6).train()
        add_residual_dropout(model, 0.3)
        if checkpointed:
            enable_activation_checkpointing(model)
        torch.manual_seed(0)
        loss = logits(model).logsumexp(-1).sum()
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_sft_builds_its_model_with_the_configured_dropout(tiny_cfg, tiny_catalog):
    from test_sft import ENV

    for p, differs in ((0.0, False), (0.4, True)):
        cfg = tiny_loop_cfg(tiny_cfg, "unused", "unused", f"sft.dropout={p}")
        model, _ = sft.init_model(cfg, tiny_catalog, ENV)
        model.train()
        a, b = logits(model), logits(model)
        assert (not torch.equal(a, b)) == differs
        model.eval()
        assert torch.equal(logits(model), logits(model))


def test_bad_dropout_names_the_key(tiny_cfg):
    with pytest.raises(ConfigError, match=r"sft.dropout must be in \[0, 1\), got -0.1 \(on the command line\)"):
        tiny_loop_cfg(tiny_cfg, "unused", "unused", "sft.dropout=-0.1")  # refused as the config loads
    cfg = dataclasses.replace(tiny_cfg, sft=dataclasses.replace(tiny_cfg.sft, dropout=-0.1))  # built in code: SFT refuses it
    with pytest.raises(ConfigError, match=r"sft.dropout must be in \[0, 1\), got -0.1 \(in the config\)"):
        sft.check_sft_settings(cfg)
