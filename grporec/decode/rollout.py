"""The `Rollout` structure every decoder returns, and the injection of missed targets (or other given items) into it.

A rollout is G completions for each of B prompts, laid out group by group: rows b*G .. b*G+G-1
belong to prompt b. Each prompt is prefilled once over B rows (left padding, attention mask and
position ids from the mask); the KV cache is then expanded to B*G rows by index, never by
re-running the prompt. Log-probabilities are full-vocabulary log-softmax in fp32, exactly as the
model defines them, so beam scores match a plain forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Rollout:
    """G completions per prompt, as the decoder produced them.

    prompt_ids, prompt_mask: [B, T], left-padded.
    completion_ids: [B*G, L]; completion_mask: [B*G, L] (1 for generated tokens up to and
        including EOS; 0 for padding after a shorter completion and for invalid rows).
    token_logps: [B*G, L] fp32, log-prob of each chosen token under the decoding distribution
        (log-softmax of logits / temperature; temperature 1 for beam search), 0 where masked.
    scores: [B*G] sum of token_logps (-inf for invalid rows).
    valid: [B*G] bool, False for beams that could not be filled with a catalog completion.
    labels: [B*G] long, index of the completion in the trie's label list, -1 when invalid.
    sids: [B*G] the completion's name (the trie's item mapping, e.g. its SID), None when invalid.
    injected: [B*G] bool, True for a row written by `inject_targets` rather than decoded (its
        token_logps and score are NaN: it was never drawn from the decoding distribution).
    level_codes: [B*G, K] the trie's codes of each completion's label (for a catalog trie, the
        SID's level codes, coarse to fine), -1 for invalid rows; None when the trie has no codes.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    token_logps: torch.Tensor
    scores: torch.Tensor
    valid: torch.Tensor
    labels: torch.Tensor
    sids: list[str | None]
    group_size: int
    injected: torch.Tensor | None = None
    level_codes: torch.Tensor | None = None

    def __post_init__(self):
        if self.injected is None:
            self.injected = torch.zeros_like(self.valid)

    @property
    def num_prompts(self) -> int:
        return self.prompt_ids.shape[0]

    @property
    def ranks(self) -> torch.Tensor:
        """[B*G] position of each completion within its group (its beam rank for beam search)."""
        return torch.arange(self.group_size, device=self.scores.device).repeat(self.num_prompts)

    def select(self, rows: torch.Tensor, group_size: int) -> "Rollout":
        """A rollout keeping `rows` [B*G'] (group by group) with the given new group size."""
        idx = rows.tolist()
        return Rollout(self.prompt_ids, self.prompt_mask, self.completion_ids[rows], self.completion_mask[rows],
                       self.token_logps[rows], self.scores[rows], self.valid[rows], self.labels[rows],
                       [self.sids[i] for i in idx], group_size, self.injected[rows],
                       None if self.level_codes is None else self.level_codes[rows])


def inject_targets(r: Rollout, targets: torch.Tensor, trie) -> Rollout:
    """Ground-truth injection: in each group whose G completions all miss its target, the last
    (lowest-ranked) row is replaced by the target's completion from the trie.

    Args:
        r: a rollout of B prompts x G.
        targets: [B] long, each prompt's own target label (-1: no target, the group is left alone).
        trie: the trie the rollout was decoded with (its `path` gives the target's token ids).
    Returns:
        A new Rollout; replaced rows are valid, carry the target's ids, mask, label and name, are
        flagged in `injected`, and have NaN token_logps and score (they were not decoded).
    """
    return inject_labels(r, targets.unsqueeze(1), trie)


def inject_labels(r: Rollout, labels: torch.Tensor, trie, keep: torch.Tensor | None = None) -> Rollout:
    """Put up to K given labels into each group: label k of group b, unless the group already holds
    it, replaces the group's lowest-ranked row that is free: not injected before, and not the first
    row holding a wanted label or the group's `keep` label (K = 1 with the targets is
    `inject_targets`; after it, a teacher's favourite items go above the injected target).

    Args:
        r: a rollout of B prompts x G.
        labels: [B, K] long, the labels to put into each group in order of priority (-1: none).
        trie: the trie the rollout was decoded with (its `path` gives each label's token ids).
        keep: [B] long, a label per group whose row is never overwritten (the target, decoded or
            injected), -1 for none; None: nothing kept beyond the wanted labels.
    Returns:
        `r` itself when every label is already in its group, else a new Rollout whose replaced
        rows are valid, carry the label's ids, mask, code and name, are flagged in `injected`, and
        have NaN token_logps and score (they were not decoded).
    """
    B, G = r.num_prompts, r.group_size
    if labels.shape[0] != B:
        raise ValueError(f"labels has {labels.shape[0]} rows for a rollout of {B} prompts")
    if labels.shape[1] >= G:
        raise ValueError(f"cannot inject {labels.shape[1]} labels into groups of {G}: keep a decoded row in each group")
    kept = [-1] * B if keep is None else keep.tolist()
    group_labels, group_injected = r.labels.view(B, G).tolist(), r.injected.view(B, G).tolist()
    rows, new = [], []  # rows to overwrite, and the label each gets
    for b, wanted in enumerate(labels.tolist()):
        held = group_labels[b]
        protected = {held.index(x) for x in set(wanted) | {kept[b]} if x >= 0 and x in held}
        free = [j for j in range(G - 1, -1, -1) if not group_injected[b][j] and j not in protected]
        placed = set(held)
        for label in wanted:
            if label >= 0 and label not in placed:
                if not free:
                    raise ValueError(f"group {b}: no row left for label {label} (G = {G}, {len(wanted)} labels to inject)")
                placed.add(label)
                rows.append(b * G + free.pop(0))
                new.append(label)
    if not rows:
        return r
    rows = torch.tensor(rows, device=r.labels.device)
    new = torch.tensor(new, device=r.labels.device)
    ids, mask = trie.path(new)
    L = r.completion_ids.shape[1]
    if ids.shape[1] != L:
        raise ValueError(f"trie paths have {ids.shape[1]} tokens but the rollout's completions have {L}")
    out = Rollout(r.prompt_ids, r.prompt_mask, r.completion_ids.clone(), r.completion_mask.clone(), r.token_logps.clone(),
                  r.scores.clone(), r.valid.clone(), r.labels.clone(), list(r.sids), G, r.injected.clone(),
                  None if r.level_codes is None else r.level_codes.clone())
    out.completion_ids[rows] = ids
    out.completion_mask[rows] = mask.to(out.completion_mask.dtype)
    out.token_logps[rows] = float("nan")
    out.scores[rows] = float("nan")
    out.valid[rows] = True
    out.labels[rows] = new
    out.injected[rows] = True
    if out.level_codes is not None:
        out.level_codes[rows] = trie.codes_of(new)
    for row, name in zip(rows.tolist(), trie.names_of(new)):
        out.sids[row] = name
    return out
