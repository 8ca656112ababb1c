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

With a trained SASRec, the prior is the product of the two sequence models' experts,

    q(i | h) proportional to p_model(i | h)^(1 - w) p_SASRec(i | h)^w over the row's candidates,
    p(i | h) = (c(last -> i) + a q(i | h)) / (c(last) + a)

(SASRec's full-softmax probability of the SID, its items summed), and SASRec's top SIDs join the
candidates. A product ranks first what both models find likely; on Office (3 seeds, SFT and GRPO
models) it had a better valid NDCG@10 than their mixture for every model and than a
reciprocal-rank fusion on average (bench/experiments/blend_forms.py). With w = 0 it is the blend
above with p_model renormalised over the candidates; `a` and `w` are chosen on valid.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from grporec.decode import SidTrie, beam_search, left_pad
from grporec.logprobs import completion_logps

MAX_SUCCESSORS = 50  # a last item's most frequent successors added as candidates (Office's most followed item has ~40)
SASREC_TOP = 20  # SASRec's most probable SIDs added as candidates when it joins the blend (as many as the beams)


@dataclass
class Candidates:
    """One row's candidates: trie labels, the model's sequence log-probs and the transition counts
    out of the row's last item (`total`: all of them, c(last))."""

    labels: list[int]
    logp: torch.Tensor  # [N]
    counts: torch.Tensor  # [N]
    total: float
    sas_logp: torch.Tensor | None = None  # [N] log p_SASRec(i | h), when a SASRec joins the prior


@dataclass
class Blend:
    """The blended recommender's settings: prior strength `a`, the training rows' transition counts
    `follows` ({SID: Counter of its successors}), and optionally a SASRec (`rewards.cf.SasrecScorer`)
    with weight `w` in the prior."""

    a: float
    follows: dict[str, Counter]
    w: float = 0.0
    sasrec: object | None = None


def blend_scores(logp: torch.Tensor, counts: torch.Tensor, total: float, a: float,
                 sas_logp: torch.Tensor | None = None, w: float = 0.0) -> torch.Tensor:
    """p(i | h) = (c(last -> i) + a q_i) / (c(last) + a), [N] -> [N]; `a` > 0, 0 <= w <= 1 (w > 0 needs
    `sas_logp`). q = exp(logp) without SASRec scores; with them, q = softmax((1 - w) logp + w sas_logp)
    over the N candidates (a product of experts)."""
    if not a > 0:
        raise ValueError(f"the blend's prior strength a must be > 0, got {a}")
    if not 0.0 <= w <= 1.0 or (w > 0 and sas_logp is None):
        raise ValueError(f"the blend's SASRec weight w must lie in [0, 1] and needs SASRec scores, got w={w}"
                         + (" without them" if sas_logp is None else ""))
    if sas_logp is None:
        prior = logp.exp()
    else:  # a weight of 0 drops its expert outright (0 * -inf would be NaN where SASRec's probability underflows)
        prior = torch.softmax((logp * (1 - w) if w < 1 else 0) + (sas_logp * w if w > 0 else 0), 0)
    return (counts + a * prior) / (total + a)


def candidate_labels(beam_labels: list[int], follows: Counter, index: dict[str, int], max_successors: int,
                     extra: list[int] = ()) -> list[int]:
    """The beams (valid ones, in order), then the last item's most frequent successors, then `extra`
    (SASRec's top labels), each once."""
    out = dict.fromkeys(lab for lab in beam_labels if lab >= 0)
    for sid, _ in follows.most_common(max_successors):
        out.setdefault(index[sid], None)
    for lab in extra:
        out.setdefault(lab, None)
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
                     max_successors: int = MAX_SUCCESSORS, sasrec=None, sasrec_top: int = SASREC_TOP) -> list[Candidates]:
    """Each row's candidates with their exact log-probs and counts (model in eval mode, on `device`).

    Args:
        samples: evaluation samples (their prompts and history SIDs).
        follows: {SID: Counter of the SIDs that followed it in the training rows} (`metrics.transition_counts`).
        sasrec: a `rewards.cf.SasrecScorer`: its `sasrec_top` most probable SIDs join the candidates and
            every candidate gets its SASRec log-probability (`Candidates.sas_logp`).
    """
    last = [s.history_sids[-1] if s.history_sids else None for s in samples]
    index = {sid: i for i, sid in enumerate(trie.names)}
    if sasrec is not None:  # SASRec's SID column of each trie label
        label_col = torch.tensor([sasrec.sid_index[name] for name in trie.names])
    out = []
    for start in range(0, len(samples), batch):
        part = range(start, min(start + batch, len(samples)))
        ids, mask = left_pad([fmt.prompt_ids(samples[j].prompt) for j in part], fmt.pad_id, device)
        labels = beam_search(model, ids, mask, trie, beams).labels.view(len(part), beams).tolist()
        sas = None if sasrec is None else sasrec.sid_probs([tuple(samples[j].history_sids) for j in part])[:, label_col]  # [b, labels]
        extra = [[]] * len(part) if sas is None else sas.topk(min(sasrec_top, sas.shape[1]), dim=1).indices.tolist()
        cands = [candidate_labels(labels[b], follows.get(last[j], Counter()), index, max_successors, extra[b])
                 for b, j in enumerate(part)]
        lps = sequence_logps(model, ids, mask, trie, cands)
        for b, j in enumerate(part):
            f = follows.get(last[j], Counter())
            counts = torch.tensor([float(f.get(trie.names[lab], 0)) for lab in cands[b]])
            sas_logp = None if sas is None else sas[b, cands[b]].log()
            out.append(Candidates(cands[b], lps[b, :len(cands[b])].float().cpu(), counts, float(sum(f.values())), sas_logp))
    return out


def blend_order(c: Candidates, a: float, w: float = 0.0) -> tuple[list[int], torch.Tensor]:
    """(the candidates' indices best first by the blend, their blended probabilities [N]); ties: the
    model's order, then the beams' order."""
    p = blend_scores(c.logp, c.counts, c.total, a, c.sas_logp, w)
    return best_first(p, c.logp), p


def best_first(p: torch.Tensor, logp: torch.Tensor) -> list[int]:
    """Indices of `p` [N] from the highest; ties: higher `logp` (the model's order), then the lower index."""
    pl, lp = p.tolist(), logp.tolist()  # Python floats: a sort key per element, no tensor indexing
    return sorted(range(len(pl)), key=lambda i: (-pl[i], -lp[i], i))


def blend_rank(scored: list[Candidates], names: list[str], a: float, k: int, w: float = 0.0) -> list[list[str]]:
    """Each row's top-k SIDs by the blend (`blend_order`)."""
    return [[names[c.labels[i]] for i in blend_order(c, a, w)[0][:k]] for c in scored]
