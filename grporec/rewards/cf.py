"""Collaborative-filtering rewards: how likely a teacher finds the completion's item.

`sasrec`: the SASRec probability (full softmax over the catalog) of the completion's SID after the
prompt's SID history, summed over the items sharing that SID. `markov`: the first-order Markov
chain's probability of the completion's SID after the history's last SID, counted on the training
split (count(last -> sid) / count(last -> any)), and 0 where the last SID was followed fewer than
`reward.markov_min_count` times in training (too little evidence to teach). Both lie in [0, 1].
Prompts without an SID history (title and description tasks) carry no collaborative signal and
get 0 for every completion, as do invalid completions.
"""
from __future__ import annotations

import torch

from grporec.data.catalog import Catalog
from grporec.metrics import transition_counts
from grporec.models.sasrec import SASRec, encode_histories, sid_scores
from grporec.rewards.inputs import RewardInputs


class SasrecScorer:
    """A trained SASRec plus the catalog mapping it needs (SID -> item indices)."""

    def __init__(self, model: SASRec, catalog: Catalog):
        self.model = model.eval()
        self.first_item = {}
        for i, it in enumerate(catalog.items):
            self.first_item.setdefault(it.sid, i)
        self.sid_index = {sid: k for k, sid in enumerate(catalog.sids)}
        self.item_sid = torch.tensor([self.sid_index[it.sid] for it in catalog.items])

    @torch.no_grad()
    def sid_probs(self, histories: list[tuple[str, ...]]) -> torch.Tensor:
        """[B, S] probability of each distinct SID after each history (items of one SID summed)."""
        device = next(self.model.parameters()).device
        hist = encode_histories([[self.first_item[s] for s in h if s in self.first_item] for h in histories],
                                self.model.shape.max_len).to(device)
        p = self.model(hist).float().softmax(-1)  # [B, N]
        out = torch.zeros(p.shape[0], len(self.sid_index), device=device)
        return out.index_add_(1, self.item_sid.to(device), p).cpu()


def sasrec_reward(x: RewardInputs, scorer: SasrecScorer) -> torch.Tensor:
    out = torch.zeros(len(x.completions))
    if x.histories is None:
        return out
    with_history = [b for b, h in enumerate(x.histories) if h]
    if not with_history:
        return out
    probs = scorer.sid_probs([x.histories[b] for b in with_history])  # [B', S]
    for k, b in enumerate(with_history):
        for i in range(b * x.group_size, (b + 1) * x.group_size):
            j = scorer.sid_index.get(x.completions[i]) if x.completions[i] is not None else None
            if j is not None:
                out[i] = probs[k, j]
    return out


class MarkovTeacher:
    """Transition counts of the training rows: last history SID -> next SID."""

    def __init__(self, train_rows, min_count: int = 1):
        self.follows = transition_counts(train_rows)
        self.totals = {last: sum(c.values()) for last, c in self.follows.items()}
        self.min_count = min_count

    def prob(self, last: str, sid: str) -> float:
        total = self.totals.get(last, 0)
        return self.follows[last][sid] / total if total >= self.min_count and total > 0 else 0.0


def markov_reward(x: RewardInputs, teacher: MarkovTeacher) -> torch.Tensor:
    out = torch.zeros(len(x.completions))
    if x.histories is None:
        return out
    for b, h in enumerate(x.histories):
        if not h:
            continue
        for i in range(b * x.group_size, (b + 1) * x.group_size):
            if x.completions[i] is not None:
                out[i] = teacher.prob(h[-1], x.completions[i])
    return out


__all__ = ["MarkovTeacher", "SasrecScorer", "markov_reward", "sasrec_reward", "sid_scores"]
