"""Prompt formats (`data.prompt_format`): BOS, SentencePiece-style tokenizers and chat templates,
the same ids in SFT, rollouts and evaluation, and the format recorded in checkpoints."""
import json

import pytest
import torch

from conftest import ENV, tiny_loop_cfg
from grporec import evaluate, loop, sft
from grporec.grpo import rollout
from grporec.config import dump_config
from grporec.data.datasets import Sample
from grporec.decode import beam_search, build_catalog_trie
from grporec.models.format import FormatError, build_format, check_recorded_format, record_format
from grporec.models.settings import recorded_settings, settings_of
from grporec.models.policy import extend_policy
from grporec.models.tiny import tokenizer_corpus
from grporec.models.tokenizer import check_sid_tokenizer
from tests_support import base_model, base_tokenizer, bos_tokenizer, chat_tokenizer, save_base_model, unigram_tokenizer

PROMPT = "### User Input: \nWhich item has the title: red pen?\n\n### Response:\n"


def ids_of(tok, *tokens):
    return [tok.convert_tokens_to_ids(t) for t in tokens]


def test_alpaca_keeps_the_tokenizers_bos_and_ends_with_newline_and_eos():
    tok = bos_tokenizer()
    tok.add_tokens(["<a_1>", "<b_2>"])
    fmt = build_format(tok)
    text = tok.encode(PROMPT, add_special_tokens=False)
    assert fmt.prompt_ids(PROMPT) == ids_of(tok, "<s>") + text  # BOS once, as the tokenizer itself puts it
    assert fmt.completion_ids("<a_1><b_2>\n") == ids_of(tok, "<a_1>", "<b_2>", "Ċ", "<|endoftext|>")
    assert fmt.completion_ids("<a_1><b_2>") == fmt.completion_ids("<a_1><b_2>\n")  # the newline is the terminator's
    # truncation keeps BOS and the prompt's last tokens: 1 + 4 = 5
    assert fmt.prompt_ids(PROMPT, max_tokens=5) == ids_of(tok, "<s>") + text[-4:]
    # a tokenizer without BOS (Qwen-like) gets nothing before the text
    assert build_format(base_tokenizer()).head_ids == ()


@pytest.mark.parametrize("newline", [True, False], ids=["newline-two-pieces", "no-newline"])
def test_sentencepiece_style_terminators(tiny_cfg, newline):
    """Unigram + Metaspace: a newline is two pieces ('▁', '\\n'), or unknown; either way every SID
    is its own tokens and completions end with a fixed terminator."""
    tok = unigram_tokenizer(tokenizer_corpus(tiny_cfg)[:400], newline)
    tok.add_tokens(["<a_1>", "<b_2>"])
    fmt = build_format(tok)
    want_end = ids_of(tok, "▁", "\n", "</s>") if newline else ids_of(tok, "</s>")
    assert fmt.terminator_ids == tuple(want_end)
    assert fmt.completion_ids("<a_1><b_2>\n") == ids_of(tok, "<a_1>", "<b_2>") + want_end
    assert fmt.prompt_ids(PROMPT)[0] == tok.bos_token_id and fmt.prompt_ids(PROMPT).count(tok.bos_token_id) == 1


def test_chat_format_renders_the_template_around_the_prompt():
    tok = chat_tokenizer()
    tok.add_tokens(["<a_1>"])
    fmt = build_format(tok, "chat")
    enc = lambda s: tok.encode(s, add_special_tokens=False)  # noqa: E731
    # ChatML: <|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n, content without the Alpaca cue
    assert fmt.prompt_ids(PROMPT) == (ids_of(tok, "<|im_start|>") + enc("user\n") + enc("### User Input: \nWhich item has the title: red pen?")
                                      + ids_of(tok, "<|im_end|>") + enc("\n") + ids_of(tok, "<|im_start|>") + enc("assistant\n"))
    assert fmt.completion_ids("<a_1>\n") == ids_of(tok, "<a_1>", "<|im_end|>")  # ends the turn as the template does
    head, tail = len(fmt.head_ids), len(fmt.tail_ids)
    assert fmt.prompt_ids(PROMPT, max_tokens=head + tail + 3)[head:-tail] == enc(PROMPT[:-len("\n\n### Response:\n")])[-3:]
    with pytest.raises(FormatError, match="no chat template"):
        build_format(base_tokenizer(), "chat", source="some/model")


@pytest.mark.parametrize("max_prompt_tokens", [None, 7], ids=["whole", "cut"])
def test_sft_rollouts_and_evaluation_feed_the_model_the_same_ids(tiny_cfg, tiny_catalog, tmp_path, monkeypatch,
                                                                 max_prompt_tokens):
    """With a BOS-adding tokenizer: the prompt ids SFT trains on are the ones rollouts and the
    evaluator decode from, and the trie's completions are SFT's completion ids; with
    data.max_prompt_tokens below the prompt's length, every stage cuts it the same way (BOS + its
    last 6 tokens)."""
    tok = bos_tokenizer()
    model = base_model(len(tok))
    extend_policy(model, tok, tiny_catalog.sid_tokens)
    fmt = build_format(tok, max_prompt_tokens=max_prompt_tokens)
    sid = tiny_catalog.sids[0]
    sample = Sample(PROMPT, sid + "\n", sid, (), "t")
    seen = {}

    def recorder(name, real):
        def left_pad(seqs, pad, device="cpu"):
            seen[name] = [list(s) for s in seqs]
            return real(seqs, pad, device)
        return left_pad

    for module in (sft, rollout, evaluate):
        monkeypatch.setattr(module, "left_pad", recorder(module.__name__, module.left_pad))
    sft.encode(fmt, [sample], "cpu")
    trie = build_catalog_trie(fmt, tiny_catalog.sids)
    cfg = tiny_loop_cfg(tiny_cfg, tmp_path, tmp_path / "run", "train.rollout_batch_prompts=1")
    [chunk] = rollout.roll_out(model.eval(), fmt, trie, [sample], cfg, {sid: 0}, 1, 0, ENV)
    evaluate.predict(model, fmt, trie, [sample], 4, 1, ENV)
    prompt = fmt.prompt_ids(PROMPT)
    assert prompt[0] == tok.bos_token_id and prompt.count(tok.bos_token_id) == 1
    whole = tok.encode(PROMPT, add_special_tokens=False)
    assert prompt[1:] == (whole if max_prompt_tokens is None else whole[-6:])  # 7 = BOS + the last 6
    assert seen["grporec.sft"] == [prompt + fmt.completion_ids(sid)]
    assert seen["grporec.grpo.rollout"] == seen["grporec.evaluate"] == [prompt]
    ids, mask = trie.path(torch.tensor([0]))
    assert ids[0][mask[0].bool()].tolist() == fmt.completion_ids(sid)
    assert chunk.rollout.valid.all()


@pytest.mark.parametrize("newline", [True, False], ids=["newline-two-pieces", "no-newline"])
def test_sft_decoding_and_evaluation_with_a_sentencepiece_style_tokenizer(tiny_cfg, tiny_catalog, tmp_path, newline):
    """From a 'pretrained' directory with a Unigram tokenizer: SFT adds the SID tokens and trains,
    GRPO decodes from it, and evaluation returns only real SIDs."""
    tok = unigram_tokenizer(tokenizer_corpus(tiny_cfg)[:400], newline)
    base = save_base_model(tok, tmp_path / "base")
    cfg = tiny_loop_cfg(tiny_cfg, tmp_path / "run-sft" / "best", tmp_path / "run-sft", f"sft.init={base}", "sft.train.max_steps=2",
                        "sft.train.eval_steps=2", "sft.valid_max_rows=4", "train.max_steps=1")
    sft.train_sft(cfg, ENV)
    best = tmp_path / "run-sft" / "best"
    assert recorded_settings(best) == settings_of(cfg) and settings_of(cfg)["data.prompt_format"] == "alpaca"
    from grporec.models.policy import load_policy

    model, tok2 = load_policy(best)
    check_sid_tokenizer(tok2, tiny_catalog.sids, source=str(best))
    fmt = build_format(tok2)
    r = beam_search(model.eval(), torch.tensor([fmt.prompt_ids(PROMPT)]), torch.ones(1, len(fmt.prompt_ids(PROMPT)), dtype=torch.long),
                    build_catalog_trie(fmt, tiny_catalog.sids), 5)
    assert r.valid.all() and all(s in tiny_catalog.ids_of_sid for s in r.sids)
    h = loop.train(tiny_loop_cfg(tiny_cfg, best, tmp_path / "grpo", "train.max_steps=1"), ENV)["history"]
    assert len(h) == 1 and h[0]["completion_length"] == len(fmt.completion_ids(tiny_catalog.sids[0]))
    (tmp_path / "c.yaml").write_text(dump_config(cfg))
    evaluate.main(["--config", str(tmp_path / "c.yaml"), "--model", str(best), "--beams", "5", "--max-rows", "6",
                   "--out", str(tmp_path / "ev")])
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["rows"] == 6 and m["invalid_outputs"] == 0 and m["prompt_format"] == "alpaca"


def test_chat_sft_is_recorded_and_a_mismatched_format_is_refused(tiny_cfg, tiny_catalog, tmp_path, capsys):
    base = save_base_model(chat_tokenizer(), tmp_path / "base")
    cfg = tiny_loop_cfg(tiny_cfg, tmp_path / "s" / "best", tmp_path / "s", f"sft.init={base}", "sft.train.max_steps=1",
                        "sft.train.eval_steps=1", "sft.valid_max_rows=2", "data.prompt_format=chat")
    sft.train_sft(cfg, ENV)
    best = tmp_path / "s" / "best"
    assert recorded_settings(best)["data.prompt_format"] == "chat"
    check_recorded_format(best, "chat")
    with pytest.raises(FormatError, match=r"was trained with data.prompt_format=chat, but this run has data.prompt_format=alpaca"):
        loop.train(tiny_loop_cfg(tiny_cfg, best, tmp_path / "g", "train.max_steps=1"), ENV)  # a library call: as given
    alpaca = tiny_loop_cfg(tiny_cfg, best, tmp_path / "e")
    (tmp_path / "a.yaml").write_text(dump_config(alpaca))
    # the command adopts the model's format over the file's, and refuses one set on the command line
    assert evaluate.main(["--config", str(tmp_path / "a.yaml"), "--model", str(best), "--max-rows", "2", "--beams", "5",
                          "--out", str(tmp_path / "ev")]) == 0
    assert "[settings] data.prompt_format=chat, as" in capsys.readouterr().out
    assert evaluate.main(["--config", str(tmp_path / "a.yaml"), "--model", str(best), "--out", str(tmp_path / "ev"),
                          "data.prompt_format=alpaca"]) == 1
    assert "--model=" in capsys.readouterr().err  # names the setting that chose the model
    h = loop.train(tiny_loop_cfg(tiny_cfg, best, tmp_path / "g2", "train.max_steps=1", "data.prompt_format=chat"), ENV)["history"]
    assert h[0]["completion_length"] == len(tiny_catalog.sids[0].split("><")) + 1  # SID tokens, then <|im_end|>
    record_format(tmp_path, "alpaca")
    (tmp_path / "grporec.json").write_text("[1]")
    with pytest.raises(FormatError, match="not a grporec record"):
        check_recorded_format(tmp_path, "alpaca")


def test_a_checkpoint_made_the_way_minionerec_makes_it_trains_and_evaluates(tiny_cfg, tiny_catalog, tmp_path):
    """MiniOneRec's sft.py adds the SID tokens in the order they first appear in index.json (not
    sorted, as grporec's own tokenizer does), resizes the embeddings and saves with save_pretrained
    (no grporec.json). GRPO trains it and keeps its token ids; the trained checkpoint's exact
    ranking equals a plain forward's scores over the checkpoint's own ids; `grporec eval` runs on it."""
    import re

    from transformers import AutoModelForCausalLM, AutoTokenizer

    index = json.loads(open(tiny_cfg.data.index_file).read())
    order = list(dict.fromkeys(t for codes in index.values() for t in codes))
    assert order != sorted(order)  # the case under test: ids in index order
    tok = base_tokenizer()
    tok.pad_token = tok.eos_token
    n_base = len(tok)
    tok.add_tokens(order)
    model = base_model(n_base)
    model.resize_token_embeddings(len(tok))
    made = tmp_path / "minionerec-sft"
    model.save_pretrained(str(made))
    tok.save_pretrained(str(made))
    assert not (made / "grporec.json").exists()
    ids = {t: tok.convert_tokens_to_ids(t) for t in order}
    assert [ids[t] for t in order] == list(range(n_base, n_base + len(order)))

    h = loop.train(tiny_loop_cfg(tiny_cfg, made, tmp_path / "grpo", "train.max_steps=1", "train.save_steps=1"), ENV)["history"]
    assert len(h) == 1 and all(torch.isfinite(torch.tensor(x["loss"])) for x in h)
    trained = tmp_path / "grpo" / "checkpoints" / "step-0000001" / "policy"
    tok2 = AutoTokenizer.from_pretrained(str(trained))
    assert len(tok2) == len(tok) and {t: tok2.convert_tokens_to_ids(t) for t in order} == ids  # nothing re-added or re-sorted
    policy = AutoModelForCausalLM.from_pretrained(str(trained)).eval()
    assert policy.get_input_embeddings().weight.shape[0] == model.get_input_embeddings().weight.shape[0]

    fmt = build_format(tok2)
    trie = build_catalog_trie(fmt, tiny_catalog.sids)
    prompt = fmt.prompt_ids(PROMPT)
    with torch.no_grad():
        r = beam_search(policy, torch.tensor([prompt]), torch.ones(1, len(prompt), dtype=torch.long), trie, evaluate.exact_beams(trie))
        lp = []
        for sid in tiny_catalog.sids:  # the checkpoint's own ids, not grporec's: each SID token looked up by name
            completion = [ids[t] for t in re.findall(r"<[^>]+>", sid)] + list(fmt.terminator_ids)
            out = policy(torch.tensor([prompt + completion])).logits[0].float().log_softmax(-1)
            lp.append(sum(out[len(prompt) - 1 + i, t].item() for i, t in enumerate(completion)))
    by_sid = dict(zip(tiny_catalog.sids, lp))
    got = [(s, x) for s, x in zip(r.sids, r.scores.tolist()) if s is not None]
    assert len(got) == len(set(tiny_catalog.sids))
    for s, x in got:
        assert abs(by_sid[s] - x) < 1e-4, s
    assert all(a[1] >= b[1] for a, b in zip(got, got[1:]))  # best first: the plain forward's ranking, up to ties

    cfg = tiny_loop_cfg(tiny_cfg, trained, tmp_path / "e")
    (tmp_path / "c.yaml").write_text(dump_config(cfg))
    assert evaluate.main(["--config", str(tmp_path / "c.yaml"), "--model", str(made), "--beams", "5", "--max-rows", "6",
                          "--out", str(tmp_path / "ev")]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["rows"] == 6 and m["invalid_outputs"] == 0
