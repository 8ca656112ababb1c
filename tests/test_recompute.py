"""Activation checkpointing (train.gradient_checkpointing): the same values and gradients, with the
layers really recomputed, through the prompt-shared KV cache of the training forward."""
import copy

import pytest
import torch

from grporec import loop, sft
from grporec.checkpoint import latest_checkpoint
from grporec.decode import SidTrie, beam_search, left_pad
from grporec.logprobs import completion_logps
from grporec.models.recompute import enable_activation_checkpointing
from conftest import ENV, params, tiny_loop_cfg
from test_decode import PAD, PROMPTS, random_catalog, tiny_lm
from test_sft import sft_cfg


def _count_layer_forwards(model) -> list[int]:
    """Wrap each decoder layer's own forward (under the checkpoint wrapper) with a call counter."""
    counts = []
    for layer in model.model.layers:
        counts.append(0)
        inner = type(layer).forward

        def counted(*a, _i=len(counts) - 1, _f=inner, _self=layer, **k):
            counts[_i] += 1
            return _f(_self, *a, **k)
        layer.forward = counted
    return counts


def test_checkpointed_layers_give_the_same_log_probs_and_gradients_and_are_recomputed():
    model = tiny_lm(23)
    trie = SidTrie.build(random_catalog(23, 15), PAD)
    ids, mask = left_pad(PROMPTS, PAD)
    r = beam_search(model, ids, mask, trie, 6)
    args = (r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask)
    weights = torch.randn(r.completion_ids.shape, generator=torch.Generator().manual_seed(1)) * r.completion_mask
    results = []
    for checkpointed in (False, True):
        m = copy.deepcopy(model).train()
        counts = _count_layer_forwards(m)
        if checkpointed:
            enable_activation_checkpointing(m)
        lp = completion_logps(m, *args, temperature=0.7)
        grads = torch.autograd.grad((lp * weights).sum(), list(m.parameters()))
        results.append((lp.detach(), grads, list(counts)))
    (lp0, g0, n0), (lp1, g1, n1) = results
    # each layer runs twice in the forward (the prompt into the cache, then the completions through
    # it); checkpointed, each of those runs again in the backward: 4
    assert n0 == [2] * len(n0) and n1 == [4] * len(n1)
    torch.testing.assert_close(lp1, lp0, atol=1e-6, rtol=1e-6)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_a_grpo_and_an_sft_run_are_the_same_with_checkpointing(tiny_cfg, tiny_model_dir, tmp_path):
    runs = {}
    for flag in ("false", "true"):
        cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / f"grpo-{flag}", "train.max_steps=2",
                            f"train.gradient_checkpointing={flag}")
        r = loop.train(cfg, ENV)
        s = sft.train_sft(sft_cfg(tiny_cfg, tmp_path / f"sft-{flag}", "sft.train.max_steps=2", "sft.train.eval_steps=0",
                                  f"sft.train.gradient_checkpointing={flag}"), ENV)
        runs[flag] = (r["history"], params(r["checkpoint"] / "policy"), s["history"], params(latest_checkpoint(tmp_path / f"sft-{flag}") / "policy"))
    (h0, p0, sh0, sp0), (h1, p1, sh1, sp1) = runs["false"], runs["true"]
    for a, b in zip(h0 + sh0, h1 + sh1):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6, abs=1e-7)
    for k in p0:
        torch.testing.assert_close(p1[k], p0[k], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(sp1[k], sp0[k], atol=1e-6, rtol=1e-6)
