"""Ranking metrics shared by every evaluator: HR@K and NDCG@K from the rank of the first hit.

A prediction list is hit at 0-based rank r when its r-th entry equals the target (SID equality);
HR@K = 1 when r < K, NDCG@K = 1 / log2(r + 2) when r < K (one relevant item, so IDCG = 1), and
both are 0 for a miss. Averages are over all rows, misses included.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

DEFAULT_KS = (1, 3, 5, 10, 20)


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
