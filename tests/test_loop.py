"""The GRPO loop on the tiny CPU configuration (fp32, deterministic)."""
import json
import os
from pathlib import Path

import pytest
import torch

from grporec import loop
from grporec.checkpoint import latest_checkpoint
from grporec.config import load_config
from grporec.models.policy import PolicyError, load_policy
from grporec.models.tokenizer import TokenizerError

from conftest import ENV, ROOT, params, reference_params, tiny_loop_cfg

GOLDEN = ROOT / "tests" / "golden" / "tiny_grpo.json"


def test_end_to_end_writes_metrics_and_a_loadable_checkpoint(tiny_cfg, tiny_model_dir, tmp_path):
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=3", "train.eval_steps=3", "eval.max_rows=8")
    result = loop.train(cfg, ENV)
    assert result["steps"] == 3 and result["reference_loaded"]
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if "loss" in x]
    assert [x["step"] for x in steps] == [1, 2, 3]
    for key in ("loss", "reward", "reward_std", "rewards/rule", "rewards/ndcg_rule", "frac_reward_zero_std", "kl",
                "categorical_diversity", "token_diversity", "completion_length", "grad_norm", "lr", "time/rollout",
                "time/reward", "time/reference", "time/policy", "time/optimizer", "completions_per_s"):
        assert key in steps[0], key
    assert steps[0]["completion_length"] == 5.0  # 3 SID tokens, newline, EOS
    # lr 1e-3, no warmup, cosine over 3 steps: 0.5 * (1 + cos(pi * s / 3)) for s = 0, 1, 2 -> 1, 0.75, 0.25
    assert [x["lr"] for x in steps] == pytest.approx([1e-3, 0.75e-3, 0.25e-3])
    evals = [x for x in lines if "eval/hr@1" in x]
    assert len(evals) == 1 and evals[0]["eval/invalid_outputs"] == 0 and {"eval/ndcg@5", "eval/hr@3"} <= set(evals[0])
    ckpt = latest_checkpoint(tmp_path / "run")
    assert ckpt.name == "step-0000003"
    assert {"policy", "trainer_state.pt", "config.yaml"} <= {p.name for p in ckpt.iterdir()}
    assert load_config(ckpt / "config.yaml") == cfg  # the resolved config travels with the checkpoint
    model, tok = load_policy(ckpt / "policy")  # HF format, with the tokenizer
    assert len(tok) == model.get_input_embeddings().num_embeddings


def test_parameters_change_after_one_step_and_not_with_lr_zero(tiny_cfg, tiny_model_dir, tmp_path):
    before = params(tiny_model_dir)
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "a", "train.max_steps=1")
    result = loop.train(cfg, ENV)
    assert result["history"][0]["frac_reward_zero_std"] < 1.0  # the step had a learning signal
    after = params(result["checkpoint"] / "policy")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    cfg0 = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "b", "train.max_steps=2", "train.lr=0.0")
    after0 = params(loop.train(cfg0, ENV)["checkpoint"] / "policy")
    assert all(torch.equal(before[k], after0[k]) for k in before)


def test_beta_zero_builds_no_reference(tiny_cfg, tiny_model_dir, tmp_path, monkeypatch):
    import grporec.grpo.setup as setup

    calls = []
    real = setup.load_policy
    monkeypatch.setattr(setup, "load_policy", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=1", "rl.beta=0.0")
    result = loop.train(cfg, ENV)
    assert not result["reference_loaded"] and len(calls) == 1  # only the policy was loaded
    assert result["history"][0]["kl"] == 0.0


def test_a_bf16_reference_gives_the_fp32_log_probs_to_bf16_precision(tiny_cfg, tiny_model_dir, tmp_path):
    """rl.reference_dtype=bfloat16 (auto's choice on CUDA) stores the reference in bf16; its log-probs
    are computed in fp32 from bf16 logits. bf16 keeps 8 mantissa bits (relative error 2^-9 per weight),
    so through 2 layers the per-token log-probs of the tiny model differ by ~1e-3; 2e-2 is the bound."""
    from grporec.data.formats import split_sid
    from grporec.data.load import load_data_catalog
    from grporec.decode import SidTrie, beam_search, left_pad
    from grporec.grpo.setup import load_models, reference_dtype
    from grporec.logprobs import completion_logps

    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "rl.reference_dtype=bfloat16")
    catalog = load_data_catalog(cfg.data)
    policy, reference, tok = load_models(cfg, catalog, ENV)
    assert {p.dtype for p in reference.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in policy.parameters()} == {torch.float32}  # the policy keeps fp32 masters
    assert reference_dtype(tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "b"), ENV) == "float32"  # auto on a CPU
    sids = [[tok.convert_tokens_to_ids(t) for t in split_sid(s)] for s in catalog.sids[:40]]
    trie = SidTrie.build(sids, tok.pad_token_id)
    prompts = [tok(f"history {i}")["input_ids"] for i in range(3)]
    ids, mask = left_pad(prompts, tok.pad_token_id)
    with torch.no_grad():
        r = beam_search(policy, ids, mask, trie, 4)
        fp32 = completion_logps(policy, r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask)
        bf16 = completion_logps(reference, r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask)
    m = r.completion_mask.bool()
    assert bf16.dtype == torch.float32
    assert 0 < (fp32 - bf16)[m].abs().max() < 2e-2  # differs (it is bf16) but only by rounding


@pytest.mark.parametrize("loss_type", ["grpo", "token"])
def test_micro_batches_give_the_same_update(tiny_cfg, tiny_model_dir, tmp_path, loss_type):
    """Splitting the step's prompts into micro-batches of 1 or 4 gives the same parameters."""
    out = []
    for micro in (1, 4):
        cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / f"m{micro}", "train.max_steps=1",
                            f"train.micro_batch_prompts={micro}", f"rl.loss_type={loss_type}")
        r = loop.train(cfg, ENV)
        out.append((r["history"][0]["loss"], params(r["checkpoint"] / "policy")))
    assert out[0][0] == pytest.approx(out[1][0], abs=1e-6)
    # Adam's first step moves a parameter by lr * g / (|g| + eps): where |g| is near eps (1e-8), the
    # rounding of a different summation order moves it by a visible fraction of lr (1.2e-6 seen on
    # one of 2,048 weights). A wrong micro-batch weighting changes update directions by ~lr = 1e-3.
    for k in out[0][1]:
        torch.testing.assert_close(out[0][1][k], out[1][1][k], atol=1e-5, rtol=1e-5)


def _losses(run_dir):
    rows = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return {x["step"]: (x["loss"], x["reward"], x["kl"]) for x in rows if "loss" in x}


@pytest.mark.parametrize("rollout", ["beam", "sample"])
def test_resume_reproduces_the_uninterrupted_run(tiny_cfg, tiny_model_dir, tmp_path, rollout):
    """Beams, and sampled rollouts (whose random streams are derived from seed and step, not saved)."""
    full = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "full", "train.max_steps=4", f"rl.rollout={rollout}")
    loop.train(full, ENV)
    part = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "part", "train.max_steps=4", "train.stop_after=2",
                         f"rl.rollout={rollout}")
    assert loop.train(part, ENV)["steps"] == 2  # interrupted after step 2, with a checkpoint
    # a crash in the middle of a later save leaves only a temporary directory behind
    (tmp_path / "part" / "checkpoints" / ".tmp-step-0000003" / "policy").mkdir(parents=True)
    assert latest_checkpoint(tmp_path / "part").name == "step-0000002"
    resumed = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "part", "train.max_steps=4", f"rl.rollout={rollout}")  # resume=auto
    assert loop.train(resumed, ENV)["steps"] == 4
    a, b = _losses(tmp_path / "full"), _losses(tmp_path / "part")
    assert sorted(b) == [1, 2, 3, 4]
    for step in (1, 2, 3, 4):  # same prompts, same rollouts, same optimizer state: same numbers
        assert b[step] == pytest.approx(a[step], abs=1e-7), step
    pa = params(latest_checkpoint(tmp_path / "full") / "policy")
    pb = params(latest_checkpoint(tmp_path / "part") / "policy")
    assert all(torch.equal(pa[k], pb[k]) for k in pa)


def test_reference_sync_and_its_checkpoint(tiny_cfg, tiny_model_dir, tmp_path):
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=2", "rl.ref_sync_steps=2")
    result = loop.train(cfg, ENV)
    ckpt = result["checkpoint"]
    assert torch.load(ckpt / "trainer_state.pt", weights_only=False)["has_reference"]  # moved away from the initial model
    init, pol, ref = params(tiny_model_dir), params(ckpt / "policy"), reference_params(ckpt)
    for k in init:  # ref = 0.6 * policy + 0.4 * initial (one sync, the reference was initial until then)
        torch.testing.assert_close(ref[k], 0.6 * pol[k] + 0.4 * init[k], atol=1e-6, rtol=1e-5)


def test_non_finite_steps_are_skipped_then_stop(tiny_cfg, tiny_model_dir, tmp_path, monkeypatch):
    import grporec.grpo.update as update

    real = update.grpo_loss
    bad_steps = {2}
    calls = {"n": 0}

    def flaky(*a, **k):
        loss, m = real(*a, **k)
        calls["n"] += 1
        step = (calls["n"] - 1) // 2 + 1  # 2 micro-batches per step in the tiny config
        return (loss * float("nan"), m) if step in bad_steps else (loss, m)

    monkeypatch.setattr(update, "grpo_loss", flaky)
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=3", "train.save_steps=1",
                        "train.save_total_limit=5")
    result = loop.train(cfg, ENV)
    assert [h["skipped_steps"] for h in result["history"]] == [0, 1, 1]
    ck = tmp_path / "run" / "checkpoints"
    p1, p2, p3 = (params(ck / f"step-000000{i}" / "policy") for i in (1, 2, 3))
    assert all(torch.equal(p1[k], p2[k]) for k in p1)  # the bad step changed nothing
    assert any(not torch.equal(p2[k], p3[k]) for k in p1)  # training went on
    assert all(torch.isfinite(v).all() for v in p3.values())

    bad_steps.update({1, 2, 3, 4})
    calls["n"] = 0
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run2", "train.max_steps=4", "train.max_bad_steps=2")
    with pytest.raises(RuntimeError, match="2 consecutive steps had a non-finite loss or gradient"):
        loop.train(cfg, ENV)


def test_missing_model_path_says_how_to_make_one(tiny_cfg, tmp_path):
    cfg = tiny_loop_cfg(tiny_cfg, tmp_path / "no-model", tmp_path / "run")
    with pytest.raises(PolicyError, match="python -m grporec.sft"):
        loop.train(cfg, ENV)


def test_tokenizer_without_sid_tokens_fails_before_training(tiny_cfg, tmp_path):
    from tests_support import save_model_without_sid_tokens

    model_dir = save_model_without_sid_tokens(tmp_path / "base")
    cfg = tiny_loop_cfg(tiny_cfg, model_dir, tmp_path / "run")
    with pytest.raises(TokenizerError, match="lacks .* SID tokens"):
        loop.train(cfg, ENV)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_bad_settings_name_the_key(tiny_cfg, tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="rl.num_generations must be at least 2"):
        loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "r", "rl.num_generations=1"), ENV)
    with pytest.raises(ValueError, match="rl.datasets: unknown 'movies'"):
        loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "r", "rl.datasets=[movies]"), ENV)


def test_golden_first_steps(tiny_cfg, tiny_model_dir, tmp_path):
    """Loss, reward and KL of the tiny config's first 4 steps. Regenerate only on purpose:
    GRPOREC_REGEN_GOLDEN=1 python -m pytest tests/test_loop.py -k golden"""
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run")
    got = [{k: h[k] for k in ("loss", "reward", "kl")} for h in loop.train(cfg, ENV)["history"]]
    if os.environ.get("GRPOREC_REGEN_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=2) + "\n")
    want = json.loads(GOLDEN.read_text())
    assert len(got) == len(want) == 4
    assert any(w["kl"] > 0 for w in want) and any(w["loss"] != 0 for w in want)  # the golden steps are informative
    for g, w in zip(got, want):
        for k in w:  # fp32 on CPU: allow for BLAS differences between machines, nothing more
            assert g[k] == pytest.approx(w[k], rel=1e-4, abs=1e-8), (k, g, w)


def test_auto_micro_batches_halve_after_out_of_memory_and_match_the_fixed_size(tiny_cfg, tiny_model_dir, tmp_path, monkeypatch,
                                                                                capsys):
    """train.micro_batch_prompts=0 starts at the decode batch (4 prompts here) and halves after an
    out-of-memory error, redoing the step's passes: with a device that holds 1 prompt a micro-batch,
    4 -> 2 -> 1 in step 1, then 1 for the rest, and the run is the run of micro_batch_prompts=1 to the
    bit (the failed passes left no gradient behind)."""
    import grporec.grpo.update as update

    real, sizes = update.micro_loss, []

    def small_device(policy, mb, cfg):
        sizes.append(mb.prompt_ids.shape[0])
        if mb.prompt_ids.shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(policy, mb, cfg)

    fixed = loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "fixed", "train.max_steps=2",
                                     "train.micro_batch_prompts=1"), ENV)
    capsys.readouterr()
    monkeypatch.setattr(update, "micro_loss", small_device)
    auto = loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "auto", "train.max_steps=2",
                                    "train.micro_batch_prompts=0"), ENV)
    # step 1: one 4-prompt micro-batch fails, then the first 2-prompt one, then 4 of 1; step 2: 4 of 1
    assert sizes == [4, 2, 1, 1, 1, 1, 1, 1, 1, 1]
    assert [h["micro_batch_prompts"] for h in auto["history"]] == [1, 1]
    assert [h["loss"] for h in auto["history"]] == [h["loss"] for h in fixed["history"]]
    a, f = params(auto["checkpoint"] / "policy"), params(fixed["checkpoint"] / "policy")
    assert all(torch.equal(a[k], f[k]) for k in f)
    log = capsys.readouterr().out
    assert "out of memory at 4 prompts a micro-batch (CUDA out of memory. Tried to allocate 2.00 GiB); redoing the " \
           "step's passes at 2" in log and "out of memory at 2 prompts" in log and "at 1" in log


def test_auto_micro_batches_refuse_several_ranks_and_sft(tiny_cfg, tiny_model_dir, tmp_path):
    from grporec.config import ConfigError
    from grporec.errors import SettingsError
    from grporec.grpo.fit import check_auto_micro

    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "r", "train.micro_batch_prompts=0")
    check_auto_micro(cfg.train, 1)  # one process: fine
    with pytest.raises(SettingsError, match="train.micro_batch_prompts=0 .* needs one process; with 2 ranks"):
        check_auto_micro(cfg.train, 2)
    with pytest.raises(ConfigError, match="sft.train.micro_batch_prompts"):
        tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "s", "sft.train.micro_batch_prompts=0")
