"""Rollout decoding: constrained beam search and sampling over a tensorized SID trie.

The decoder knows only token ids. `build_catalog_trie` is the one bridge from a tokenizer and a
catalog's SIDs to the token-id trie.
"""
from __future__ import annotations

import torch

from grporec.decode.beam import beam_search
from grporec.decode.rollout import Rollout, inject_labels, inject_targets
from grporec.models.inputs import left_pad
from grporec.decode.sample import dynamic_sample, sample
from grporec.decode.trie import SidTrie

__all__ = ["SidTrie", "Rollout", "beam_search", "sample", "dynamic_sample", "left_pad", "inject_targets", "inject_labels", "build_catalog_trie"]


def build_catalog_trie(fmt, sids: list[str], device: str | torch.device = "cpu") -> SidTrie:
    """The trie of every catalog completion (the SID's tokens, then the prompt format `fmt`'s
    terminator), labelled by position in `sids`, carrying each SID as its name and its level
    codes [N, K] (`sid_codes`) as its codes."""
    from grporec.data.formats import sid_codes

    seqs = [fmt.completion_ids(s) for s in sids]
    return SidTrie.build(seqs, pad_id=fmt.pad_id, device=device, names=list(sids), codes=sid_codes(sids))
