"""SFT: prompt tokens carry no loss, the loss falls, early stopping keeps the best model."""
import json

import pytest
import torch

from grporec import dist, sft
from grporec.data.datasets import Sample
from grporec.models.policy import load_policy
from grporec.models.format import build_format
from conftest import params, tiny_loop_cfg

ENV = dist.DistEnv(0, 1, 0, torch.device("cpu"))


def test_prompt_tokens_carry_no_loss(tiny_model_dir):
    model, tok = load_policy(tiny_model_dir)
    samples = [Sample("### User Input: \nWhich item has the title: a?\n\n### Response:\n", "<a_1>\n", "<a_1>", (), "t"),
               Sample("### User Input: \nx\n\n### Response:\n", "some title words\n", "<a_1>", (), "t")]
    fmt = build_format(tok)
    ids, mask, labels = sft.encode(fmt, samples, "cpu")
    for i, smp in enumerate(samples):
        comp = fmt.completion_ids(smp.completion)
        assert labels[i, -len(comp):].tolist() == comp  # completion (then EOS) is labelled
        assert (labels[i, :-len(comp)] == sft.IGNORE).all()  # prompt and padding are not
    loss, n = sft.completion_loss_sum(model, ids, mask, labels)
    # naive: a full forward, cross-entropy at every labelled position only
    logits = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits.float()
    want, count = 0.0, 0
    for i in range(ids.shape[0]):
        for t in range(1, ids.shape[1]):
            if labels[i, t] != sft.IGNORE:
                want += -logits[i, t - 1].log_softmax(-1)[labels[i, t]].item()
                count += 1
    assert n == count == sum(len(fmt.completion_ids(x.completion)) for x in samples)
    assert loss.item() == pytest.approx(want, rel=1e-5)
    # changing only a prompt token's label would change nothing: prompt positions have no label at all
    prompt_grad = torch.autograd.grad(loss, model.get_input_embeddings().weight)[0]
    assert torch.isfinite(prompt_grad).all()


def sft_cfg(tiny_cfg, out, *overrides):
    return tiny_loop_cfg(tiny_cfg, "unused", out, "sft.train.progress=false", "sft.train.lr=3e-3",
                         "sft.train.prompts_per_step=16", "sft.train.micro_batch_prompts=8", "sft.valid_max_rows=20",
                         *overrides)


def test_sft_loss_falls_and_best_model_is_saved(tiny_cfg, tmp_path):
    cfg = sft_cfg(tiny_cfg, tmp_path / "sft", "sft.train.max_steps=30", "sft.train.eval_steps=10", "sft.patience=0")
    r = sft.train_sft(cfg, ENV)
    losses = [h["loss"] for h in r["history"]]
    # 30 steps of a 32-wide model: the mean of the last 5 losses is about 0.75x the first 5; a step
    # that did not update would stay within a few percent
    assert sum(losses[-5:]) / 5 < 0.85 * sum(losses[:5]) / 5
    v = [e["valid_loss"] for e in r["evals"]]
    assert len(v) == 3 and v[-1] < v[0]
    model, tok = load_policy(r["best"])  # what GRPO and the evaluator load
    assert r["best_valid_loss"] == min(v)


def test_early_stopping_keeps_the_best_checkpoint(tiny_cfg, tmp_path, monkeypatch):
    scripted = iter([3.0, 2.0, 2.5, 2.6, 2.7, 2.8])  # best at the 2nd evaluation, then worse
    monkeypatch.setattr(sft, "valid_loss", lambda *a, **k: next(scripted))
    cfg = sft_cfg(tiny_cfg, tmp_path / "sft", "sft.train.max_steps=12", "sft.train.eval_steps=2", "sft.patience=2",
                  "sft.train.save_steps=1", "sft.train.save_total_limit=20")
    r = sft.train_sft(cfg, ENV)
    assert [e["step"] for e in r["evals"]] == [2, 4, 6, 8]  # stopped after 2 evaluations without improvement
    assert r["steps"] == 8 and r["best_valid_loss"] == 2.0
    best = params(r["best"])
    at4 = params(tmp_path / "sft" / "checkpoints" / "step-0000004" / "policy")
    at8 = params(tmp_path / "sft" / "checkpoints" / "step-0000008" / "policy")
    assert all(torch.equal(best[k], at4[k]) for k in best)  # the best model is the one from step 4
    assert any(not torch.equal(best[k], at8[k]) for k in best)
    log = [json.loads(x) for x in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [x["eval/valid_loss"] for x in log if "eval/valid_loss" in x] == [3.0, 2.0, 2.5, 2.6]


def test_ndcg_selection_keeps_the_model_with_the_best_valid_ndcg_and_logs_both_buckets(tiny_cfg, tmp_path):
    """select_on=ndcg: each evaluation's NDCG@10 is the evaluator's on the same valid rows, the seen and
    unseen figures average back to it by row counts, and `best` is the model of the highest one."""
    from grporec.data.load import load_data_catalog, load_split
    from grporec.decode import build_catalog_trie
    from grporec.evaluate import eval_samples, evaluate, split_transitions
    from grporec.models.format import format_for

    cfg = sft_cfg(tiny_cfg, tmp_path / "sft", "sft.train.max_steps=8", "sft.train.eval_steps=4", "sft.patience=0",
                  "sft.select_on=ndcg", "sft.select_beams=10")
    r = sft.train_sft(cfg, ENV)
    evals = r["evals"]
    assert [e["step"] for e in evals] == [4, 8]
    catalog = load_data_catalog(cfg.data)
    samples = eval_samples(cfg, load_split(cfg.data, "valid", catalog), cfg.sft.valid_max_rows)
    transitions = split_transitions(cfg, catalog)
    model, tok = load_policy(r["best"])
    fmt = format_for(tok, cfg.data.prompt_format, r["best"], max_prompt_tokens=cfg.data.max_prompt_tokens)
    m, _ = evaluate(model, fmt, build_catalog_trie(fmt, catalog.sids, "cpu"), samples, 10, cfg.eval.batch_prompts, ENV,
                    ks=(10,), transitions=transitions)
    assert max(e["valid_ndcg@10"] for e in evals) == pytest.approx(m["ndcg@10"], abs=1e-9)
    for e in evals:
        parts = [(m[p]["rows"], e.get(f"valid_{p}_ndcg@10", 0.0)) for p in ("seen", "unseen")]
        assert sum(n * v for n, v in parts) / len(samples) == pytest.approx(e["valid_ndcg@10"], abs=1e-12)
    assert m["seen"]["rows"] > 0 and m["unseen"]["rows"] > 0  # both buckets are in the check


def test_sft_from_a_base_model_adds_sid_tokens(tiny_cfg, tiny_catalog, tmp_path):
    from tests_support import save_model_without_sid_tokens

    base = save_model_without_sid_tokens(tmp_path / "base")
    cfg = sft_cfg(tiny_cfg, tmp_path / "sft", f"sft.init={base}", "sft.train.max_steps=2", "sft.train.eval_steps=2")
    r = sft.train_sft(cfg, ENV)
    model, tok = load_policy(r["best"])
    assert all(t in tok.get_vocab() for t in tiny_catalog.sid_tokens)
    rows = model.get_input_embeddings().num_embeddings  # model.pad_vocab_to_multiple_of = 64 by default
    assert rows % 64 == 0 and len(tok) <= rows < len(tok) + 64
    assert model.generation_config.suppress_tokens == list(range(len(tok), rows))  # saved with the checkpoint
    with pytest.raises(ValueError, match="model.pad_vocab_to_multiple_of must be at least 1"):
        sft.train_sft(sft_cfg(tiny_cfg, tmp_path / "x", f"sft.init={base}", "model.pad_vocab_to_multiple_of=0"), ENV)


def test_unknown_sft_dataset(tiny_cfg, tmp_path):
    with pytest.raises(ValueError, match="sft.datasets: unknown 'reviews'"):
        sft.train_sft(sft_cfg(tiny_cfg, tmp_path / "s", "sft.datasets=[reviews]"), ENV)


def test_length_sorted_micro_batches_pad_less_and_give_the_same_gradient(tiny_model_dir):
    model, tok = load_policy(tiny_model_dir)
    fmt = build_format(tok)
    long = "### User Input: \nwhich item has the title: a very long title with many words in it?\n\n### Response:\n"
    samples = [Sample(long if i % 2 else "### User Input: \nx\n\n### Response:\n", "<a_1>\n", "<a_1>", (), "t") for i in range(4)]
    tokens = sft.tokenize(fmt, samples)
    parts = sft.micro_batches(tokens, 2, by_length=True)
    assert parts == [[tokens[0], tokens[2]], [tokens[1], tokens[3]]]  # the short pair, then the long
    assert sft.micro_batches(tokens, 2, by_length=False) == [tokens[:2], tokens[2:]]
    n_short, n_long = (len(p) + len(c) for p, c in tokens[:2])
    padded = lambda groups: sum(sft.pad_tokens(g, fmt.pad_id, "cpu")[0].numel() for g in groups)
    # in the stream's order each micro-batch pads to the long prompt: 4 rows x n_long; sorted, 2 x n_short + 2 x n_long
    assert padded(sft.micro_batches(tokens, 2, False)) == 4 * n_long
    assert padded(parts) == 2 * n_short + 2 * n_long < 4 * n_long

    def grad(groups):
        model.zero_grad()
        for g in groups:
            loss, _ = sft.completion_loss_sum(model, *sft.pad_tokens(g, fmt.pad_id, "cpu"))
            loss.backward()
        return model.get_input_embeddings().weight.grad.clone()
    assert torch.allclose(grad(parts), grad(sft.micro_batches(tokens, 2, False)), atol=1e-6)
