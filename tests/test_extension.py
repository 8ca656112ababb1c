"""The extension point for loss variants: `grpo.update.micro_loss(policy, mb, cfg)` and its MicroBatch record."""
import pytest
import torch

from grporec import loop
from grporec.grpo import batches, update
from conftest import ENV, tiny_loop_cfg


def test_a_loss_variant_sees_targets_and_its_extra_metrics_are_logged(tiny_cfg, tiny_model_dir, tmp_path, monkeypatch):
    real = update.micro_loss
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

    monkeypatch.setattr(update, "micro_loss", variant)
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=2", "rl.add_gt=true")
    history = loop.train(cfg, ENV)["history"]
    assert all(h["target_tokens"] == pytest.approx(5.0) for h in history)  # averaged over micro-batches and logged
    assert all("kl" in h and "policy_term" in h for h in history)  # the loss's own metrics are still there
    assert sum(seen) > 0  # the injected-row check above ran on real rows


def test_sibling_advantages_run_through_the_loop(tiny_cfg, tiny_model_dir, tmp_path, monkeypatch):
    seen = []
    real = update.micro_loss

    def spy(policy, mb, cfg):
        seen.append(tuple(mb.advantages.shape))
        return real(policy, mb, cfg)

    monkeypatch.setattr(update, "micro_loss", spy)
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=2", "rl.advantage=sibling")
    history = loop.train(cfg, ENV)["history"]
    assert all(len(s) == 2 and s[1] == 5 for s in seen)  # [rows, L]: one advantage per token (3 levels, newline, EOS)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    with pytest.raises(ValueError, match="rl.advantage=sibling gives per-token advantages; rl.loss_type=sequence"):
        loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "b", "rl.advantage=sibling",
                                 "rl.loss_type=sequence"), ENV)


def test_nll_anchor_rides_in_the_prompt_shared_forward(tiny_cfg):
    """micro_loss with rl.nll_coef: the GRPO loss of the G completions plus nll_coef x the mean token
    NLL of each prompt's target, against the same numbers from plain forwards."""
    from dataclasses import replace

    from grporec.decode import SidTrie, beam_search, left_pad
    from grporec.logprobs import completion_logps, full_completion_logps
    from grporec.loss import grpo_loss
    from test_decode import PAD, PROMPTS, random_catalog, tiny_lm

    G = 4
    model = tiny_lm(7)
    trie = SidTrie.build(random_catalog(7, 12), PAD)
    ids, mask = left_pad(PROMPTS, PAD)
    r = beam_search(model, ids, mask, trie, G)
    targets = torch.tensor([3, 5, 11])
    t_ids, t_mask = trie.path(targets)
    adv = torch.randn(len(PROMPTS) * G, generator=torch.Generator().manual_seed(0))
    mb = batches.MicroBatch(ids, mask, r.completion_ids, r.completion_mask, [None] * 3, adv, None, None, t_ids, t_mask,
                       r.injected, 1.0)
    cfg = tiny_loop_cfg(tiny_cfg, "unused", "unused", "rl.beta=0.0", "rl.nll_coef=0.5")
    loss, m = update.micro_loss(model, mb, cfg)
    plain = completion_logps(model, ids, mask, r.completion_ids, r.completion_mask)
    want_grpo, _ = grpo_loss(plain, None, adv, r.completion_mask, 0.0)
    tl = full_completion_logps(model, ids, mask, t_ids, t_mask)  # [3, L], one row per prompt
    want_nll = -(tl * t_mask).sum() / t_mask.sum()
    torch.testing.assert_close(m["nll_target"], want_nll.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, want_grpo + 0.5 * want_nll, atol=1e-5, rtol=1e-5)
    # without the anchor: the plain GRPO loss, and no nll_target metric
    loss0, m0 = update.micro_loss(model, mb, replace(cfg, rl=replace(cfg.rl, nll_coef=0.0)))
    torch.testing.assert_close(loss0, want_grpo, atol=1e-6, rtol=1e-6)
    assert "nll_target" not in m0


def test_nll_anchor_through_the_loop_lowers_the_target_nll(tiny_cfg, tiny_model_dir, tmp_path):
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=4", "rl.nll_coef=1.0",
                        "rl.beta=0.0", "train.prompts_per_step=2", "train.lr=1e-2")
    h = loop.train(cfg, ENV)["history"]
    assert all("nll_target" in x for x in h)
    assert h[-1]["nll_target"] < h[0]["nll_target"]


def test_beam_sample_rollouts_through_the_loop_are_reproducible(tiny_cfg, tiny_model_dir, tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / name, "train.max_steps=2", "rl.rollout=beam_sample")
        runs.append(loop.train(cfg, ENV)["history"])
    assert [(h["loss"], h["reward"]) for h in runs[0]] == [(h["loss"], h["reward"]) for h in runs[1]]
    assert all(h["categorical_diversity"] == 1.0 for h in runs[0])  # beams are distinct items, as in beam search


@pytest.mark.parametrize("loss_type", ["grpo", "token"])
def test_the_sync_free_update_equals_the_summed_micro_batch_losses(tiny_cfg, loss_type):
    """policy_backward keeps losses and metrics on the device until one transfer at the end; its
    loss, metrics and gradient must equal the plain sum over micro-batches of share x loss, with the
    share of rows (grpo) or of tokens (token) computed by hand."""
    from grporec.decode import SidTrie, beam_search, left_pad
    from test_decode import PAD, PROMPTS, random_catalog, tiny_lm

    G = 4
    model = tiny_lm(9)
    trie = SidTrie.build(random_catalog(9, 12) + [[11, 21, 31, 41, 5, 1]], PAD)  # a longer SID: token counts differ
    ids, mask = left_pad(PROMPTS, PAD)
    r = beam_search(model, ids, mask, trie, G)
    t_ids, t_mask = trie.path(torch.tensor([3, 5, 11]))
    adv = torch.randn(len(PROMPTS) * G, generator=torch.Generator().manual_seed(1))
    mbs = [batches.MicroBatch(ids[p:p + 1], mask[p:p + 1], r.completion_ids[p * G:(p + 1) * G],
                              r.completion_mask[p * G:(p + 1) * G], [None], adv[p * G:(p + 1) * G], None, None,
                              t_ids[p:p + 1], t_mask[p:p + 1], r.injected[p * G:(p + 1) * G], 1.0) for p in range(3)]
    cfg = tiny_loop_cfg(tiny_cfg, "unused", "unused", "rl.beta=0.0", f"rl.loss_type={loss_type}")
    model.train()
    total, metrics, finite = update.policy_backward(model, mbs, cfg, ENV)
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    tokens = [float(mb.completion_mask.sum()) for mb in mbs]
    # rows: 4 of 12 each -> 1/3; tokens: each micro-batch's count over the mean count per rank (1 rank: the sum)
    shares = [t / sum(tokens) for t in tokens] if loss_type == "token" else [1 / 3] * 3
    want, want_kl = 0.0, 0.0
    for mb, share in zip(mbs, shares):
        loss, m = update.micro_loss(model, mb, cfg)
        (loss * share).backward()
        want += loss.item() * share
        want_kl += m["kl"].item() / 3  # metrics average with the share of rows
    assert finite
    assert total == pytest.approx(want, rel=1e-6, abs=1e-9)
    assert metrics["kl"] == pytest.approx(want_kl, rel=1e-6, abs=1e-9)
    for a, p in zip(got, model.parameters()):
        torch.testing.assert_close(a, p.grad, atol=1e-7, rtol=1e-6)


def test_no_grad_log_probs_over_several_micro_batches_equal_one_forward_each(tiny_cfg):
    """train.logps_batch_prompts joins micro-batches of different prompt widths and completion lengths
    into one no-grad forward (prompts left-padded further, completions right-padded): every row's
    log-probs must be what its own micro-batch's forward gives."""
    from grporec.decode import SidTrie, beam_search, left_pad
    from grporec.logprobs import completion_logps
    from test_decode import PAD, PROMPTS, random_catalog, tiny_lm

    G = 3
    model = tiny_lm(11)
    trie = SidTrie.build(random_catalog(11, 12) + [[11, 21, 31, 41, 5, 1]], PAD)
    mbs = []
    for p, prompt in enumerate(PROMPTS):  # each prompt decoded alone: its own width and completion length
        ids, mask = left_pad([prompt], PAD)
        r = beam_search(model, ids, mask, trie, G)
        t_ids, t_mask = trie.path(torch.tensor([p]))
        mbs.append(batches.MicroBatch(ids, mask, r.completion_ids, r.completion_mask, [None], torch.zeros(G), None, None,
                                      t_ids, t_mask, r.injected, 0.7))
    assert len({mb.prompt_ids.shape[1] for mb in mbs}) > 1  # the widths really differ
    for prompts in (1, 2, 3):  # one forward each, a pair and a single, all three together
        cfg = tiny_loop_cfg(tiny_cfg, "unused", "unused", f"train.logps_batch_prompts={prompts}")
        batches.add_logps(mbs, model, "ref_logps", cfg, ENV, micro=1)  # unused: logps_batch_prompts is set
        for mb in mbs:
            with torch.no_grad():
                want = completion_logps(model, mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mb.completion_mask, 0.7)
            assert mb.ref_logps.shape == want.shape
            m = mb.completion_mask.bool()
            torch.testing.assert_close(mb.ref_logps[m], want[m], atol=1e-5, rtol=1e-5)
