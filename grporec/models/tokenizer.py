"""Tokenizers with SID tokens: train a tiny one locally, or extend an existing HF tokenizer.

Every SID token (`<a_12>`) must be one token, and an SID's text must tokenize to exactly its SID
tokens, one per level, wherever it appears (prompts hold SID histories; completions start with
the SID): the SID trie, the level codes, the reward and the loss rely on that. What follows the
SID in a completion is the prompt format's terminator (`grporec.models.format`).
`check_sid_tokenizer` verifies the whole catalog before any training starts.
"""
from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from grporec.data.formats import split_sid
from grporec.errors import UserError

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"


class TokenizerError(UserError):
    """The tokenizer cannot represent the catalog's SIDs as grporec needs."""


def train_tiny_tokenizer(texts: Iterable[str], sid_tokens: list[str], vocab_size: int = 1000) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer learnt from `texts`, with SID tokens, EOS and PAD added.

    Byte-level BPE can encode any text (no unknown token); SID tokens are added whole, sorted, as
    ordinary (non-special) tokens. (MiniOneRec adds them in the order they first appear in
    index.json; grporec looks every SID token up by name, so either order loads.)
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in sorted(sid_tokens)])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN)
    hf.padding_side = "left"  # generation pads on the left
    return hf


def add_sid_tokens(tokenizer: PreTrainedTokenizerBase, sid_tokens: list[str]) -> list[str]:
    """Add the SID tokens the tokenizer lacks (sorted, as ordinary tokens). Returns those added.

    The caller must then resize the model's embeddings to `len(tokenizer)`.
    """
    vocab = tokenizer.get_vocab()
    missing = sorted(t for t in set(sid_tokens) if t not in vocab)
    if missing:
        tokenizer.add_tokens(missing)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # Qwen-style tokenizers may lack a pad token
    return missing


def check_sid_tokenizer(tokenizer: PreTrainedTokenizerBase, sids: Iterable[str], source: str = "tokenizer") -> None:
    """Raise TokenizerError unless every SID's text encodes to its SID tokens, one per level.

    Args:
        tokenizer: the policy's tokenizer.
        sids: every catalog SID.
        source: named in the message (for example the model directory).
    """
    if tokenizer.eos_token_id is None:
        raise TokenizerError(f"{source}: the tokenizer has no EOS token")
    vocab = tokenizer.get_vocab()
    sids = list(sids)
    lacking = sorted({t for s in sids for t in split_sid(s) if t not in vocab})
    if lacking:
        raise TokenizerError(
            f"{source}: the tokenizer lacks {len(lacking)} of the catalog's SID tokens "
            f"(e.g. {', '.join(lacking[:3])}); extend it with the catalog's SID tokens "
            "(grporec.models.tokenizer.add_sid_tokens, done by `python -m grporec.sft`)"
        )
    for sid in sids:
        got = tokenizer.encode(sid, add_special_tokens=False)
        want = [vocab[t] for t in split_sid(sid)]
        if got != want:
            raise TokenizerError(f"{source}: the SID {sid!r} tokenizes to {got}, expected its SID tokens {want} "
                                 "(are the SID tokens added as whole tokens?)")
