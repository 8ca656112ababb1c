"""Collaborative-filtering rewards: how likely a teacher finds the completion's item.

`sasrec`: the SASRec probability (full softmax over the catalog) of the completion's SID after the
prompt's SID history, summed over the items sharing that SID. `markov`: the first-order Markov
chain's probability of the completion's SID after the history's last SID, counted on the training
split (count(last -> sid) / count(last -> any)), and 0 where the last SID was followed fewer than
`reward.markov_min_count` times in training (too little evidence to teach). `teacher`: the two as one
teacher, the Markov counts smoothed with SASRec as their prior (grporec.blend's form with SASRec in the
generative model's place), p(sid | h) = (count(last -> sid) + a p_SASRec(sid | h)) / (count(last) + a) with
a = `reward.teacher_a`: SASRec's generalisation where the last SID was rarely followed, the counts where it
was often. All lie in [0, 1].
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


def _sid_prob_reward(x: RewardInputs, sid_probs, sid_index: dict[str, int]) -> torch.Tensor:
    """Each completion's entry of sid_probs(its prompt's history) [B', S]; 0 without a history or an SID."""
    out = torch.zeros(len(x.completions))
    if x.histories is None:
        return out
    with_history = [b for b, h in enumerate(x.histories) if h]
    if not with_history:
        return out
    probs = sid_probs([x.histories[b] for b in with_history])  # [B', S]
    for k, b in enumerate(with_history):
        for i in range(b * x.group_size, (b + 1) * x.group_size):
            j = sid_index.get(x.completions[i]) if x.completions[i] is not None else None
            if j is not None:
                out[i] = probs[k, j]
    return out


def sasrec_reward(x: RewardInputs, scorer: SasrecScorer) -> torch.Tensor:
    return _sid_prob_reward(x, scorer.sid_probs, scorer.sid_index)


class CountsSasrecTeacher:
    """The training rows' transition counts from the history's last SID, smoothed with SASRec's
    probability: p(s | h) = (c(last -> s) + a p_SASRec(s | h)) / (c(last) + a). a -> 0 is the Markov
    chain wherever the last SID was followed; a -> infinity is SASRec alone."""

    def __init__(self, scorer: SasrecScorer, train_rows, a: float):
        if not a > 0:
            raise ValueError(f"reward.teacher_a must be > 0 (the weight of SASRec's prior, in counts), got {a}")
        self.scorer, self.a = scorer, a
        self.follows = transition_counts(train_rows)

    def sid_probs(self, histories: list[tuple[str, ...]]) -> torch.Tensor:
        """[B, S] the teacher's probability of each distinct SID (scorer.sid_index order) after each
        non-empty history; each row sums to 1."""
        p = self.scorer.sid_probs(histories)
        counts = torch.zeros_like(p)
        for b, h in enumerate(histories):
            for sid, n in self.follows.get(h[-1], {}).items():
                counts[b, self.scorer.sid_index[sid]] = n
        return (counts + self.a * p) / (counts.sum(1, keepdim=True) + self.a)


def teacher_reward(x: RewardInputs, teacher: CountsSasrecTeacher) -> torch.Tensor:
    return _sid_prob_reward(x, teacher.sid_probs, teacher.scorer.sid_index)


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


__all__ = ["CountsSasrecTeacher", "MarkovTeacher", "SasrecScorer", "markov_reward", "sasrec_reward", "sid_scores",
           "teacher_reward"]
