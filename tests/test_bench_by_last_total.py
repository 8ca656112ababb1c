"""bench/experiments/by_last_total.py: NDCG@10 split by the last item's training successor total."""
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "experiments"))
import by_last_total as B  # noqa: E402


def test_buckets_cover_every_total_at_their_edges():
    assert [B.bucket_of(t) for t in (0, 1, 2, 3, 4, 9, 10, 500)] == ["0", "1", "2-3", "2-3", "4-9", "4-9", "10+", "10+"]


def test_contributions_are_each_buckets_ndcg_over_all_rows_and_add_up():
    """4 rows, totals 0, 1, 3, 12, ranks 0 (NDCG 1), -1 (0), 1 (1/log2 3), 9 (1/log2 11); 10 is outside the top 10.
    Each bucket: its rows' NDCG / 4; the sum is the mean NDCG@10 (1 + 1/log2 3 + 1/log2 11) / 4."""
    c = B.contributions([0, 1, 3, 12], [0, -1, 1, 9])
    assert c == pytest.approx({"0": 1 / 4, "1": 0.0, "2-3": 1 / math.log2(3) / 4, "4-9": 0.0, "10+": 1 / math.log2(11) / 4},
                              abs=1e-12)
    assert sum(c.values()) == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11)) / 4, abs=1e-12)
    assert B.contributions([20], [10])["10+"] == 0.0  # rank 11: no NDCG@10
    with pytest.raises(ValueError, match="2 ranks for 1 rows"):
        B.contributions([0], [0, 1])
