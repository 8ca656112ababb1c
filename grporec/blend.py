"""The blended recommender: the generative model's ranking and the Markov chain's counts in one list.

On Office_Products the generative model wins the rows whose last item -> target transition was
never trained and the first-order Markov chain wins the rows whose transition was (docs/results.md).
The blend weighs the two kinds of evidence instead of stacking them: the training rows' transition
counts out of the row's last item, smoothed with the model as the prior,

    p(i | h) = (c(last -> i) + a * p_model(i | h)) / (c(last) + a)

(additive smoothing with prior strength `a`, chosen on valid). Where the last item was followed
often, its counts lead; where it never was, the list is the model's own; in between, a count of
one competes with the model's belief. `p_model` is the model's exact sequence probability of the
SID (the product of its tokens' probabilities, what beam search ranks by). Candidates: the model's
beams and the last item's most frequent training successors, each scored exactly by one
teacher-forced forward. `grporec eval --blend-a A` ranks by it; bench/blend.py fits `a` on valid.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from grporec.decode import SidTrie, beam_search, left_pad
from grporec.logprobs import completion_logps

MAX_SUCCESSORS = 50  # a last item's most frequent successors added as candidates (Office's most followed item has ~40)


@dataclass
class Candidates:
    """One row's candidates: trie labels, the model's sequence log-probs and the transition counts
    out of the row's last item (`total`: all of them, c(last))."""

    labels: list[int]
    logp: torch.Tensor  # [N]
    counts: torch.Tensor  # [N]
    total: float


def blend_scores(logp: torch.Tensor, counts: torch.Tensor, total: float, a: float) -> torch.Tensor:
    """p(i | h) = (c(last -> i) + a * exp(logp_i)) / (c(last) + a), [N] -> [N]; `a` > 0."""
    if not a > 0:
        raise ValueError(f"the blend's prior strength a must be > 0, got {a}")
    return (counts + a * logp.exp()) / (total + a)


def candidate_labels(beam_labels: list[int], follows: Counter, index: dict[str, int], max_successors: int) -> list[int]:
    """The beams (valid ones, in order), then the last item's most frequent successors not among them."""
    out = dict.fromkeys(lab for lab in beam_labels if lab >= 0)
    for sid, _ in follows.most_common(max_successors):
        out.setdefault(index[sid], None)
    return list(out)


@torch.no_grad()
def sequence_logps(model, ids: torch.Tensor, mask: torch.Tensor, trie: SidTrie, cands: list[list[int]]) -> torch.Tensor:
    """[B, N] exact sequence log-probabilities of each prompt's candidate labels (N = the longest
    list; -inf where a shorter list is padded): one teacher-forced forward over the SIDs' tokens."""
    N = max(len(c) for c in cands)
    labels = torch.tensor([c + [c[0]] * (N - len(c)) for c in cands], device=ids.device)  # [B, N]
    comp, cmask = trie.path(labels.view(-1))
    lp = (completion_logps(model, ids, mask, comp, cmask) * cmask).sum(-1).view(len(cands), N)
    pad = torch.tensor([[j >= len(c) for j in range(N)] for c in cands], device=ids.device)
    return lp.masked_fill(pad, float("-inf"))


@torch.no_grad()
def score_candidates(model, fmt, trie: SidTrie, samples, follows: dict[str, Counter], beams: int, batch: int, device,
                     max_successors: int = MAX_SUCCESSORS) -> list[Candidates]:
    """Each row's candidates with their exact log-probs and counts (model in eval mode, on `device`).

    Args:
        samples: evaluation samples (their prompts and last history SIDs).
        follows: {SID: Counter of the SIDs that followed it in the training rows} (`metrics.transition_counts`).
    """
    last = [s.history_sids[-1] if s.history_sids else None for s in samples]
    index = {sid: i for i, sid in enumerate(trie.names)}
    out = []
    for start in range(0, len(samples), batch):
        part = range(start, min(start + batch, len(samples)))
        ids, mask = left_pad([fmt.prompt_ids(samples[j].prompt) for j in part], fmt.pad_id, device)
        labels = beam_search(model, ids, mask, trie, beams).labels.view(len(part), beams).tolist()
        cands = [candidate_labels(labels[b], follows.get(last[j], Counter()), index, max_successors)
                 for b, j in enumerate(part)]
        lps = sequence_logps(model, ids, mask, trie, cands)
        for b, j in enumerate(part):
            f = follows.get(last[j], Counter())
            counts = torch.tensor([float(f.get(trie.names[lab], 0)) for lab in cands[b]])
            out.append(Candidates(cands[b], lps[b, :len(cands[b])].float().cpu(), counts, float(sum(f.values()))))
    return out


def blend_order(c: Candidates, a: float) -> tuple[list[int], torch.Tensor]:
    """(the candidates' indices best first by the blend, their blended probabilities [N]); ties: the
    model's order, then the beams' order."""
    p = blend_scores(c.logp, c.counts, c.total, a)
    return sorted(range(len(c.labels)), key=lambda i: (-float(p[i]), -float(c.logp[i]), i)), p


def blend_rank(scored: list[Candidates], names: list[str], a: float, k: int) -> list[list[str]]:
    """Each row's top-k SIDs by the blend (`blend_order`)."""
    return [[names[c.labels[i]] for i in blend_order(c, a)[0][:k]] for c in scored]
