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
    with pytest.raises(PolicyError, match=r"empty is not a model directory \(no config.json\)"):
        load_policy(tmp_path / "empty")
