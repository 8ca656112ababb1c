"""Ranking metrics shared by every evaluator: HR@K and NDCG@K from the rank of the first hit.

A prediction list is hit at 0-based rank r when its r-th entry equals the target (SID equality);
HR@K = 1 when r < K, NDCG@K = 1 / log2(r + 2) when r < K (one relevant item, so IDCG = 1), and
both are 0 for a miss. Averages are over all rows, misses included.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

DEFAULT_KS = (1, 3, 5, 10, 20, 50)  # the one default of the HR@K / NDCG@K cut-offs (eval.ks, evaluate, SASRec)


def first_hit_rank(predictions: Sequence[str | None], target: str) -> int:
    """0-based rank of the first prediction equal to `target`, or -1."""
    for r, p in enumerate(predictions):
        if p == target:
            return r
    return -1


def ranking_metrics(ranks: Sequence[int], ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Mean HR@K and NDCG@K over rows, from each row's first-hit rank (-1 = miss)."""
    n = len(ranks)
    if n == 0:
        raise ValueError("ranking_metrics needs at least one row")
    out = {}
    for k in ks:
        hits = [r for r in ranks if 0 <= r < k]
        out[f"hr@{k}"] = len(hits) / n
        out[f"ndcg@{k}"] = sum(1.0 / math.log2(r + 2) for r in hits) / n
    return out


def row_ndcg(ranks: Sequence[int], k: int) -> list[float]:
    """Each row's NDCG@k (1/log2(rank + 2) for a hit within k, else 0)."""
    return [1.0 / math.log2(r + 2) if 0 <= r < k else 0.0 for r in ranks]


def paired_difference(ranks_a: Sequence[int], ranks_b: Sequence[int], k: int) -> tuple[float, float]:
    """Mean of NDCG@k(b) - NDCG@k(a) over the same rows, and its standard error.

    Two models scored on the same rows are strongly correlated, so the paired difference is far
    more precise than comparing the two means' separate error bars.
    """
    return _mean_and_se([b - a for a, b in zip(row_ndcg(ranks_a, k), row_ndcg(ranks_b, k))], ranks_a, ranks_b)


def paired_hr_difference(ranks_a: Sequence[int], ranks_b: Sequence[int], k: int) -> tuple[float, float]:
    """Mean of HR@k(b) - HR@k(a) over the same rows, and its standard error (as `paired_difference`)."""
    return _mean_and_se([float(0 <= b < k) - float(0 <= a < k) for a, b in zip(ranks_a, ranks_b)], ranks_a, ranks_b)


def _mean_and_se(d: list[float], ranks_a: Sequence[int], ranks_b: Sequence[int]) -> tuple[float, float]:
    if len(ranks_a) != len(ranks_b) or len(ranks_a) < 2:
        raise ValueError("a paired difference needs the same rows (at least 2) for both models")
    mean = sum(d) / len(d)
    var = sum((x - mean) ** 2 for x in d) / (len(d) - 1)
    return mean, math.sqrt(var / len(d))


# ------------------------------------------------------------------ seen / unseen transitions


def transition_counts(train_rows) -> dict[str, Counter]:
    """last history SID -> Counter of the target SIDs that followed it in the training rows (rows
    with a history): what a first-order Markov chain counts (its baseline, its reward)."""
    follows: dict[str, Counter] = defaultdict(Counter)
    for r in train_rows:
        if r.history_sids:
            follows[r.history_sids[-1]][r.item_sid] += 1
    return dict(follows)


def train_transitions(train_rows) -> set[tuple[str, str]]:
    """Every (last history SID -> target SID) pair of the training rows (rows with a history)."""
    return {(last, nxt) for last, c in transition_counts(train_rows).items() for nxt in c}


def seen_flags(pairs: Sequence[tuple[str | None, str]], transitions: set[tuple[str, str]]) -> list[bool]:
    """Per row, whether its (last history SID, target SID) occurs in `transitions`.

    A "seen" row's answer is one a first-order Markov chain counted in training; an "unseen" row
    needs generalisation. The two are reported apart because they measure different abilities.
    """
    return [(last, target) in transitions for last, target in pairs]


def bucket_metrics(ranks: Sequence[int], seen: Sequence[bool], ks: Sequence[int] = DEFAULT_KS) -> dict[str, dict]:
    """{"seen": metrics, "unseen": metrics}, each with its row count (metrics empty for an empty bucket)."""
    if len(ranks) != len(seen):
        raise ValueError(f"bucket_metrics: {len(ranks)} ranks but {len(seen)} seen flags")
    out = {}
    for name, want in (("seen", True), ("unseen", False)):
        part = [r for r, s in zip(ranks, seen) if s == want]
        out[name] = {**(ranking_metrics(part, ks) if part else {}), "rows": len(part)}
    return out
