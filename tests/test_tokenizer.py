import pytest
import torch
from tests_support import base_model, base_tokenizer

from grporec.data.formats import split_sid
from grporec.models.policy import PolicyError, extend_policy, load_policy, save_policy
from grporec.models.format import build_format
from grporec.models.tokenizer import TokenizerError, check_sid_tokenizer


def _expect_layout(tok, sid):
    ids = build_format(tok).completion_ids(sid + "\n")
    vocab = tok.get_vocab()
    assert ids[:-2] == [vocab[t] for t in split_sid(sid)]  # one token per SID token
    assert ids[-2:] == tok.encode("\n", add_special_tokens=False) + [tok.eos_token_id]
    assert len(ids) == len(split_sid(sid)) + 2


def test_tiny_tokenizer_completion_layout(tiny_model_dir, tiny_catalog):
    model, tok = load_policy(tiny_model_dir)
    check_sid_tokenizer(tok, tiny_catalog.sids)
    for sid in tiny_catalog.sids:
        _expect_layout(tok, sid)
    assert model.get_input_embeddings().num_embeddings == len(tok)
    text = "### User Input: \nWhich item has the title: anything at all?\n\n### Response:\n"
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text  # byte-level: lossless


def test_extended_tokenizer_and_resized_model(tmp_path, tiny_catalog):
    tok = base_tokenizer()
    model = base_model(len(tok))
    with pytest.raises(TokenizerError, match="lacks .* SID tokens"):
        check_sid_tokenizer(tok, tiny_catalog.sids, source="base")
    n0 = len(tok)
    added = extend_policy(model, tok, tiny_catalog.sid_tokens)
    assert added == sorted(tiny_catalog.sid_tokens)
    assert len(tok) == n0 + len(added)
    assert model.get_input_embeddings().num_embeddings == len(tok)
    assert [tok.convert_tokens_to_ids(t) for t in added] == list(range(n0, n0 + len(added)))  # sorted order
    check_sid_tokenizer(tok, tiny_catalog.sids)
    for sid in tiny_catalog.sids:
        _expect_layout(tok, sid)
    save_policy(model, tok, tmp_path / "ext")
    model2, tok2 = load_policy(tmp_path / "ext")
    check_sid_tokenizer(tok2, tiny_catalog.sids)
    assert extend_policy(model2, tok2, tiny_catalog.sid_tokens) == []  # idempotent
    ids = torch.tensor([tok2.encode("<a_1> x", add_special_tokens=False)])
    torch.testing.assert_close(model2(ids).logits, model(ids).logits)


def test_load_policy_errors(tmp_path):
    with pytest.raises(PolicyError, match=r"model directory not found: .*nothing.*python -m grporec.sft"):
        load_policy(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PolicyError, match=r"empty is not a model directory \(no config.json, and no policy/ of a GRPO checkpoint in it\)"):
        load_policy(tmp_path / "empty")


def test_padded_vocabulary_rows_are_never_generated(tiny_catalog):
    """Rows past the tokenizer, made to win every greedy step, are emitted by HF generate without
    the suppression extend_policy records, and never with it; the SID trie never allows them."""
    from grporec.decode import build_catalog_trie
    from grporec.models.format import build_format

    tok = base_tokenizer()
    torch.manual_seed(0)
    model = base_model(len(tok))
    extend_policy(model, tok, tiny_catalog.sid_tokens, pad_to_multiple_of=64)
    rows = model.get_input_embeddings().num_embeddings
    assert rows % 64 == 0 and rows > len(tok)  # 300-odd + SID tokens, padded up
    with torch.no_grad():  # tied embeddings: the padded rows' logits become h . 100 h_mean, the largest
        h = model.model(torch.tensor([tok.encode("which item")])).last_hidden_state[0, -1]
        model.get_input_embeddings().weight[len(tok):] = 100 * h
    ids = torch.tensor([tok.encode("which item")])
    suppressed = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.eos_token_id)
    assert (suppressed[0, ids.shape[1]:] < len(tok)).all()
    model.generation_config.suppress_tokens = None
    free = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.eos_token_id)
    assert (free[0, ids.shape[1]:] >= len(tok)).any()  # the test can see a padded row being generated
    trie = build_catalog_trie(build_format(tok), tiny_catalog.sids)
    assert all(int(c.max()) < len(tok) for c in trie.columns)


def test_the_tiny_model_tokenizes_as_it_will_after_a_save_and_load(tmp_path):
    """SFT trains with the tokenizer object; GRPO, evaluation and resume read it from disk. Both must
    give the same ids: the trained object alone splits " \\n" before a word into two tokens, the
    class transformers loads for a qwen2 model into one (the NDCG selection test also catches this)."""
    from grporec.config import TinyModelConfig
    from grporec.models.policy import build_tiny_policy, load_tokenizer, save_policy
    from grporec.models.tokenizer import train_tiny_tokenizer

    texts = ["### User Input: \nCan you predict the next item?\n\n### Response:\n", "request. \n\nmore text"] * 50
    sids = ["<a_1>", "<b_2>", "<c_3>"]
    prompt = "### User Input: \nCan you predict <a_1><b_2><c_3>\n\n### Response:\n"
    model, tok = build_tiny_policy(texts, sids, TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                                                               intermediate_size=64, tokenizer_vocab_size=300))
    save_policy(model, tok, tmp_path / "m")
    assert tok(prompt)["input_ids"] == load_tokenizer(tmp_path / "m")(prompt)["input_ids"]
    raw = train_tiny_tokenizer(texts, sids, vocab_size=300)  # what SFT used before: differs, or this test checks nothing
    assert raw(prompt)["input_ids"] != tok(prompt)["input_ids"]
