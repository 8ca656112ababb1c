"""Tokenizers with SID tokens: train a tiny one locally, or extend an existing HF tokenizer.

Every SID token (`<a_12>`) must be one token, and a completion `sid + "\\n"` followed by EOS must
tokenize to exactly the SID's tokens, then the newline token, then EOS: the SID trie, the reward
and the loss all rely on that layout. `completion_ids` builds it and `check_sid_tokenizer`
verifies it for a whole catalog before any training starts.
"""
from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from grporec.data.formats import split_sid

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"


class TokenizerError(ValueError):
    """The tokenizer cannot represent the catalog's SIDs as grporec needs."""


def train_tiny_tokenizer(texts: Iterable[str], sid_tokens: list[str], vocab_size: int = 1000) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer learnt from `texts`, with SID tokens, EOS and PAD added.

    Byte-level BPE can encode any text (no unknown token); SID tokens are added whole, sorted,
    as ordinary (non-special) tokens, as MiniOneRec adds them to Qwen's tokenizer.
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


def completion_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of a completion: `text` (an SID or title, with its newline), then EOS."""
    return tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]


def check_sid_tokenizer(tokenizer: PreTrainedTokenizerBase, sids: Iterable[str], source: str = "tokenizer") -> None:
    """Raise TokenizerError unless every `sid + "\\n"` + EOS is SID tokens, newline, EOS.

    Args:
        tokenizer: the policy's tokenizer.
        sids: every catalog SID.
        source: named in the message (for example the model directory).
    """
    if tokenizer.eos_token_id is None:
        raise TokenizerError(f"{source}: the tokenizer has no EOS token")
    vocab = tokenizer.get_vocab()
    newline = tokenizer.encode("\n", add_special_tokens=False)
    if len(newline) != 1:
        raise TokenizerError(f"{source}: a newline does not encode to one token ({newline})")
    sids = list(sids)
    lacking = sorted({t for s in sids for t in split_sid(s) if t not in vocab})
    if lacking:
        raise TokenizerError(
            f"{source}: the tokenizer lacks {len(lacking)} of the catalog's SID tokens "
            f"(e.g. {', '.join(lacking[:3])}); extend it with the catalog's SID tokens "
            "(grporec.models.tokenizer.add_sid_tokens, done by `python -m grporec.sft`)"
        )
    for sid in sids:
        got = completion_ids(tokenizer, sid + "\n")
        want = [vocab[t] for t in split_sid(sid)] + newline + [tokenizer.eos_token_id]
        if got != want:
            raise TokenizerError(f"{source}: completion {sid!r} + newline + EOS tokenizes to {got}, expected {want}")
