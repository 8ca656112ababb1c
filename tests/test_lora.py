"""LoRA (model.lora): the adapter arithmetic, SID rows that train alone, the reference for free,
merged saves that load as plain models, and GRPO / SFT / resume with adapters."""
import json

import pytest
import torch
from torch import nn

from grporec import loop, sft
from grporec.grpo.setup import load_models
from grporec.checkpoint import latest_checkpoint
from grporec.config import LoraConfig
from grporec.data.load import load_data_catalog
from grporec.errors import SettingsError
from grporec.models.lora import LoraLinear, add_adapters, adapters_off, merged_state_dict
from grporec.models.policy import load_policy
from conftest import ENV, params, tiny_loop_cfg
from test_sft import sft_cfg


def test_lora_linear_is_the_base_plus_the_scaled_low_rank_update():
    torch.manual_seed(0)
    base = nn.Linear(3, 2)
    w, b = base.weight.detach().clone(), base.bias.detach().clone()
    layer = LoraLinear(base, rank=1, alpha=4.0, dropout=0.0)  # scale 4 / 1 = 4
    x = torch.tensor([[1.0, 2.0, -1.0]])
    torch.testing.assert_close(layer(x), x @ w.T + b)  # B = 0: a fresh adapter changes nothing
    with torch.no_grad():
        layer.lora_A.copy_(torch.tensor([[1.0, 0.0, 1.0]]))  # A x = 1 + (-1) = 0 ... use another x below
        layer.lora_B.copy_(torch.tensor([[0.5], [-1.0]]))
    x = torch.tensor([[1.0, 2.0, 3.0]])  # A x = 1 + 3 = 4; B A x = [2, -4]; times 4 = [8, -16]
    torch.testing.assert_close(layer(x), x @ w.T + b + torch.tensor([[8.0, -16.0]]))
    layer.enabled = False
    torch.testing.assert_close(layer(x), x @ w.T + b)
    assert not layer.weight.requires_grad and layer.lora_A.requires_grad and layer.lora_B.requires_grad


def _adapted(tiny_model_dir, tiny_catalog, **kw):
    model, tok = load_policy(tiny_model_dir)
    sid_ids = tok.convert_tokens_to_ids(tiny_catalog.sid_tokens)
    plain = {k: v.clone() for k, v in model.state_dict().items()}
    add_adapters(model, LoraConfig(rank=4, alpha=8.0, **kw), sid_ids)
    return model, tok, torch.tensor(sorted(sid_ids)), plain


def test_only_adapters_and_sid_rows_train_and_the_merge_is_the_adapted_model(tiny_model_dir, tiny_catalog):
    model, tok, sid_ids, plain = _adapted(tiny_model_dir, tiny_catalog)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B", "sid_weight")) for n in trainable)
    n_linear = sum(1 for layer in model.model.layers for m in layer.modules() if isinstance(m, LoraLinear))
    assert n_linear == 7 * len(model.model.layers)  # all-linear: q, k, v, o, gate, up, down
    ids = torch.tensor([[3, int(sid_ids[0]), 7, int(sid_ids[5])]])
    before = model(ids).logits.detach()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):  # two steps: B moves at the first, A and B at the second
        opt.zero_grad()
        (-model(ids).logits.log_softmax(-1)[0, :, sid_ids].mean()).backward()
        opt.step()
    after = model(ids).logits.detach()
    assert (after - before).abs().max() > 1e-3
    with adapters_off(model):  # the model it started from, exactly
        torch.testing.assert_close(model(ids).logits, before, atol=0, rtol=0)
    # the frozen vocabulary rows did not move; the SID rows did
    emb = model.model.embed_tokens
    torch.testing.assert_close(emb.weight, plain["model.embed_tokens.weight"], atol=0, rtol=0)
    assert (emb.sid_weight - plain["model.embed_tokens.weight"][sid_ids]).abs().max() > 1e-4
    merged = merged_state_dict(model.state_dict(), 8.0 / 4, sid_ids)
    assert set(merged) == set(plain)
    fresh, _ = load_policy(tiny_model_dir)
    fresh.load_state_dict(merged)
    torch.testing.assert_close(fresh(ids).logits, after, atol=1e-5, rtol=1e-5)


def test_lora_settings_are_checked():
    from grporec.models.lora import check_lora

    with pytest.raises(SettingsError, match="rl.sync_ref_model=false"):
        check_lora(LoraConfig(rank=4), rl_reference_sync=True)
    with pytest.raises(SettingsError, match="rank must be >= 0"):
        check_lora(LoraConfig(rank=-1))
    model = nn.Module()
    model.model = nn.Module()
    model.model.layers = nn.ModuleList([nn.Sequential(nn.Linear(2, 2))])
    with pytest.raises(SettingsError, match=r"model.lora.target_modules: \['qkv'\] matches no linear layer"):
        add_adapters(model, LoraConfig(rank=2, target_modules=["qkv"], sid_rows=False), [])


LORA = ("model.lora.rank=4", "model.lora.alpha=8", "rl.sync_ref_model=false")


def test_grpo_with_lora_uses_the_policy_with_adapters_off_as_reference_and_saves_both_forms(tiny_cfg, tiny_model_dir, tmp_path):
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=2", "train.lr=1e-2", *LORA)
    catalog = load_data_catalog(cfg.data)
    policy, reference, _ = load_models(cfg, catalog, ENV)
    assert reference.wrapped is policy  # no second model
    r = loop.train(cfg, ENV)
    assert r["history"][0]["kl"] == pytest.approx(0.0, abs=1e-7)  # step 1: policy == reference (B = 0)
    assert r["history"][1]["kl"] > 0
    ckpt = latest_checkpoint(tmp_path / "run")
    merged, init = params(ckpt / "policy"), params(tiny_model_dir)  # a plain HF directory
    assert set(merged) == set(init)
    assert torch.equal(merged["model.norm.weight"], init["model.norm.weight"])  # frozen, not adapted
    assert not torch.equal(merged["model.layers.0.self_attn.q_proj.weight"], init["model.layers.0.self_attn.q_proj.weight"])
    adapter = json.loads((ckpt / "policy" / "adapter" / "adapter_config.json").read_text())
    assert adapter["rank"] == 4 and adapter["scale"] == 2.0 and len(adapter["sid_token_ids"]) == len(catalog.sid_tokens)
    from safetensors.torch import load_file

    tensors = load_file(str(ckpt / "policy" / "adapter" / "adapter_model.safetensors"))
    assert tensors and all(k.endswith(("lora_A", "lora_B", "sid_weight")) for k in tensors)


def test_grpo_with_lora_resumes_exactly(tiny_cfg, tiny_model_dir, tmp_path):
    full = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "full", "train.max_steps=3", "train.lr=1e-2", *LORA)
    loop.train(full, ENV)
    part = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "part", "train.max_steps=3", "train.lr=1e-2",
                         "train.stop_after=1", *LORA)
    loop.train(part, ENV)
    loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "part", "train.max_steps=3", "train.lr=1e-2", *LORA), ENV)
    a, b = params(latest_checkpoint(tmp_path / "full") / "policy"), params(latest_checkpoint(tmp_path / "part") / "policy")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_with_another_lora_rank_is_refused(tiny_cfg, tiny_model_dir, tmp_path):
    loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=1", *LORA), ENV)
    with pytest.raises(SettingsError, match=r"was written with model.lora.rank=4, this run has model.lora.rank=8"):
        loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=2", *LORA, "model.lora.rank=8"), ENV)


def test_sft_with_lora_learns_and_its_best_model_loads_as_a_plain_model(tiny_cfg, tiny_model_dir, tmp_path):
    cfg = sft_cfg(tiny_cfg, tmp_path / "sft", f"sft.init={tiny_model_dir}", "sft.train.max_steps=12", "sft.train.eval_steps=6",
                  "sft.train.lr=1e-2", "model.lora.rank=8")
    r = sft.train_sft(cfg, ENV)
    losses = [h["loss"] for h in r["history"]]
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3
    model, tok = load_policy(r["best"])
    assert not any("lora" in k or "sid_weight" in k for k in model.state_dict())
    assert (r["best"] / "adapter" / "adapter_model.safetensors").is_file()
