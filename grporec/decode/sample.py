"""Constrained sampling and dynamic sampling over the SID trie, sharing one prompt prefill.

`sample` draws G completions per prompt from the trie-masked distribution at a temperature:
at each depth the allowed columns' log-softmax(logits / T) are renormalised and one column is
drawn with a seeded `torch.Generator`, so runs are reproducible. Every sample is a catalog
completion by construction.

`dynamic_sample` draws ceil(1.5 G) samples and keeps G per prompt: first every copy of the
target present (capped at G), then one copy of each other distinct completion in order of
frequency, then the remaining duplicates; this keeps groups informative (a group of identical
completions has zero advantage everywhere).
"""
from __future__ import annotations

import math
from collections import Counter

import torch

from grporec.decode.beam import NEG_INF, finish_rollout
from grporec.decode.rollout import Rollout
from grporec.models.inputs import prompt_rows
from grporec.decode.stepper import Stepper
from grporec.decode.trie import SidTrie


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    trie: SidTrie,
    num_samples: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    shared_prefix: bool | None = None,
) -> Rollout:
    """G samples per prompt from the trie-masked distribution.

    Args:
        prompt_ids, prompt_mask: [B, T] left-padded prompts.
        num_samples: G.
        temperature: divides the logits before the softmax (> 0).
        generator: a `torch.Generator` on the model's device, for reproducible draws.
        shared_prefix: prefix-shared attention after the prefill (None: where supported).
    Returns:
        Rollout with G rows per prompt in draw order; token_logps are log-softmax(logits / T)
        of the drawn tokens over the full vocabulary.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    B, G, L = prompt_ids.shape[0], num_samples, trie.depth
    device = prompt_ids.device
    stepper = Stepper(model, shared_prefix)
    logits = stepper.prefill(prompt_ids, prompt_mask)  # [B, V]
    rows = prompt_rows(B, G, device)  # [B*G] prompt of each sample
    stepper.expand(G, max_new=L)  # expand the cache by index, no second prefill
    logits = logits[rows]
    state = torch.zeros(B * G, dtype=torch.long, device=device)
    tokens, token_lp, is_pad = [], [], []
    for d in range(L):
        logp = (logits / temperature).log_softmax(-1)  # [B*G, V]
        child, ok = trie.allowed(d, state)
        col_tok, col_pad = trie.emitted_tokens(d)
        step_lp = logp[:, col_tok].masked_fill(col_pad, 0.0).masked_fill(~ok, NEG_INF)  # [B*G, C]
        col = torch.multinomial(step_lp.softmax(-1), 1, generator=generator).squeeze(1)  # [B*G]
        r = torch.arange(B * G, device=device)
        state = child[r, col].long()
        tokens.append(col_tok[col])
        token_lp.append(step_lp[r, col])
        is_pad.append(col_pad[col])
        if d < L - 1:
            logits = stepper.step(tokens[-1])
    token_lp_t = torch.stack(token_lp, 1)
    return finish_rollout(prompt_ids, prompt_mask, trie, torch.stack(tokens, 1), token_lp_t, torch.stack(is_pad, 1),
                   token_lp_t.sum(1), state, G, constrained=True)


def dynamic_keep(labels: list[int], target: int, G: int) -> list[int]:
    """Which of one prompt's draws to keep (indices into `labels`), G of them.

    Order: every copy of the target (capped at G); then one copy of each other distinct
    completion, most frequent first (ties: first drawn first); then remaining duplicates.
    """
    if len(labels) < G:
        raise ValueError(f"need at least G={G} draws, got {len(labels)}")
    keep = [i for i, lab in enumerate(labels) if lab == target][:G]
    counts = Counter(lab for lab in labels if lab != target)
    first = {}
    for i, lab in enumerate(labels):
        first.setdefault(lab, i)
    for lab in sorted(counts, key=lambda x: (-counts[x], first[x])):
        keep.append(first[lab])
    taken = set(keep)
    keep += [i for i in range(len(labels)) if i not in taken]
    return keep[:G]


@torch.no_grad()
def dynamic_sample(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    trie: SidTrie,
    num_samples: int,
    targets: torch.Tensor,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> Rollout:
    """Draw ceil(1.5 G) per prompt and keep G (see `dynamic_keep`).

    Args:
        targets: [B] label index of each prompt's target in the trie (-1 if not in it).
    """
    G = num_samples
    n = math.ceil(1.5 * G)
    drawn = sample(model, prompt_ids, prompt_mask, trie, n, temperature, generator)
    labels = drawn.labels.view(-1, n).tolist()
    keep = [b * n + i for b, (labs, t) in enumerate(zip(labels, targets.tolist())) for i in dynamic_keep(labs, t, G)]
    return drawn.select(torch.tensor(keep, device=drawn.labels.device), G)
