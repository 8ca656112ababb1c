"""bench/host_ops.py: the op counter behind the host-cost proxy (issue 35), on computations counted by hand."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import host_ops as H  # noqa: E402


def test_views_launch_no_work_and_in_place_ops_do():
    assert H.is_metadata_only(torch.ops.aten.view.default) and H.is_metadata_only(torch.ops.aten.transpose.int)
    assert not H.is_metadata_only(torch.ops.aten.add.Tensor)
    assert not H.is_metadata_only(torch.ops.aten.add_.Tensor)  # writes its input: work, though it aliases


def test_the_counter_counts_each_phase_by_hand():
    counter = H.OpCounter()
    x, y = torch.ones(2, 3), torch.ones(2, 3)

    def body():
        z = x + y  # add: work
        z = z.view(-1)  # view: metadata only
        return z.sum().item()  # sum: work; item: a host sync (_local_scalar_dense), which is work too

    with counter:
        assert counter.wrap(body, "a")() == 12.0
        x * y  # outside any phase: not counted
    s = counter.summary(steps=1)
    assert set(s) == {"a"}
    assert (s["a"]["total_per_step"], s["a"]["work_per_step"], s["a"]["syncs_per_step"]) == (4, 3, 1)
    assert s["a"]["top_work_ops"] == {"aten.add.Tensor": 1, "aten.sum.default": 1, "aten._local_scalar_dense.default": 1}


def test_grpo_step_compare_runs_the_old_code_it_names(tmp_path):
    """--compare's child for the old revision runs with --code DIR: it must import grporec from DIR, not
    the working tree (bench/common.py once put the working tree first, so both sides ran the same code)."""
    import shutil
    import subprocess

    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "grporec", tmp_path / "old" / "grporec", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}
    run = lambda *a: subprocess.run([sys.executable, str(root / "bench" / "grpo_step.py"), *a, "--print-code"],  # noqa: E731
                                    capture_output=True, text=True, env=env, timeout=120)
    old = run("--code", str(tmp_path / "old"))
    assert old.returncode == 0, old.stderr
    assert old.stdout.strip() == str((tmp_path / "old").resolve())
    assert run().stdout.strip() == str(root)


def test_the_phase_profiler_reports_each_phase_and_the_top_ops():
    """PhaseProfiler: each wrapped phase appears once per call with its host time, a phase that ran
    a matmul is no shorter than that matmul's own time, and the table names the operations."""
    x = torch.randn(256, 256)
    prof = H.PhaseProfiler(torch.device("cpu"))
    mm = prof.wrap(lambda: x @ x, "a")
    add = prof.wrap(lambda: x + 1, "b")
    with prof:
        mm(), mm(), add()
    s = prof.summary()
    assert set(s["phases"]) == {"a", "b"}
    assert (s["phases"]["a"]["calls"], s["phases"]["b"]["calls"]) == (2, 1)
    assert s["phases"]["a"]["host_s"] > 0 and s["phases"]["a"]["device_s"] == 0  # a CPU run has no device time
    events = {e.key: e for e in prof.prof.key_averages()}
    assert s["phases"]["a"]["host_s"] >= events["aten::mm"].cpu_time_total / 1e6
    assert "aten::mm" in s["table"] and "aten::add" in s["table"]
