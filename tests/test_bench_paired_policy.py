"""bench/experiments/paired_policy.py: per-seed paired differences of two models' eval outputs."""
import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "experiments"))
import paired_policy as P  # noqa: E402


def eval_dir(path: Path, rows) -> str:
    """An eval directory whose predictions.json holds (input, target, ranked list) rows."""
    path.mkdir(parents=True)
    (path / "predictions.json").write_text(json.dumps([{"input": i, "output": t + "\n", "predict": p} for i, t, p in rows]))
    return str(path)


def test_differences_are_b_minus_a_per_row(tmp_path, monkeypatch):
    """Row 1: A ranks the target 1st, B 2nd; row 2: A misses it, B ranks it 1st. NDCG@10 per row:
    A (1, 0), B (1/log2 3, 1): mean difference ((1/log2 3 - 1) + 1) / 2; HR@10 (0 + 1) / 2."""
    a = eval_dir(tmp_path / "a", [("h1", "x", ["x", "y"]), ("h2", "z", ["x", "y"])])
    b = eval_dir(tmp_path / "b", [("h1", "x", ["y", "x"]), ("h2", "z", ["z", "y"])])
    out = tmp_path / "o.json"
    monkeypatch.setattr(sys, "argv", ["paired_policy", "--a", a, "--b", b, "--out", str(out)])
    P.main()
    r = json.loads(out.read_text())
    assert r["seeds"][0]["diff_ndcg@10"] == pytest.approx((1 / math.log2(3) - 1 + 1) / 2)
    assert r["seeds"][0]["diff_hr@10"] == pytest.approx(0.5) and r["mean_a_ndcg@10"] == pytest.approx(0.5)
    c = eval_dir(tmp_path / "c", [("h1", "x", ["x"]), ("other", "z", ["z"])])
    monkeypatch.setattr(sys, "argv", ["paired_policy", "--a", a, "--b", c])
    with pytest.raises(SystemExit, match="score different rows"):
        P.main()
