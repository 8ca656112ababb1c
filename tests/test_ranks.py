"""Issue 20's multi-rank defects with 2 gloo ranks: one rank's failure, and the resume decision."""
import os
import subprocess
import sys
import time
from pathlib import Path

from grporec.config import dump_config
from conftest import ROOT, subprocess_env, tiny_loop_cfg

FAILING_REWARD = '''
import os
import torch


def fail_on_rank1(inputs):
    if os.environ["RANK"] == "1":
        raise ValueError("fail_on_rank1: the reward fails on rank 1 only")
    return torch.zeros(len(inputs.completions))
'''


def launch_two_ranks(argv: list[str], cwd: Path, port: int) -> list[subprocess.Popen]:
    """Two processes with torch's env:// variables and no torchrun agent (as a scheduler that
    starts each rank itself would), so nothing but grporec can stop the survivor."""
    procs = []
    for rank in (0, 1):
        env = dict(subprocess_env(), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, *argv], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    return procs


def test_an_error_on_one_rank_ends_both_promptly_with_its_message_once(tiny_cfg, tiny_model_dir, tmp_path):
    """Item 4. A user reward raises on rank 1 only. Before the fix rank 0 died on a broken gloo
    connection with a second, misleading traceback (and under NCCL it would wait for the group's
    timeout). Now: rank 1 prints its error, rank 0 says it stopped because rank 1 failed, both exit
    non-zero well within the bound."""
    (tmp_path / "fail_rewards.py").write_text(FAILING_REWARD)
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=3",
                        "reward.names=[rule, 'fail_rewards:fail_on_rank1']")
    (tmp_path / "c.yaml").write_text(dump_config(cfg))
    t0 = time.monotonic()
    procs = launch_two_ranks(["-m", "grporec.loop", "--config", "c.yaml"], tmp_path, 29531)
    try:
        outs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert time.monotonic() - t0 < 120
    assert [p.returncode for p in procs] == [1, 1], outs
    both = "".join(outs)
    assert both.count("error: unexpected ValueError: fail_on_rank1: the reward fails on rank 1 only") == 1
    assert "rank 1 stopped" not in both
    assert "rank 0 stopped because rank 1 failed" in outs[0]
    assert "Connection closed" not in both and "Traceback" not in outs[0] and "TCPStore" not in both


RESUME_PROBE = '''
import sys
from pathlib import Path

from grporec import dist
from grporec.resume import decide_start

env = dist.setup()
mine = Path(sys.argv[1]) / f"rank{env.rank}"  # each rank's own view: as on a non-shared filesystem
choice = decide_start(mine, "auto", env)
(Path(sys.argv[1]) / f"choice{env.rank}.txt").write_text(str(choice))
dist.teardown()
'''


def test_the_resume_point_is_rank_0s_on_every_rank(tmp_path):
    """Item 3. Rank 0 sees step-2, rank 1 (a lagging filesystem) sees step-5: both resume rank 0's
    step-2. Before the fix each rank took its own latest checkpoint."""
    for rank, step in ((0, 2), (1, 5)):
        (tmp_path / f"rank{rank}" / "checkpoints" / f"step-{step:07d}").mkdir(parents=True)
    (tmp_path / "probe.py").write_text(RESUME_PROBE)
    procs = launch_two_ranks([str(tmp_path / "probe.py"), str(tmp_path)], ROOT, 29532)
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    expected = str(tmp_path / "rank0" / "checkpoints" / "step-0000002")
    assert [(tmp_path / f"choice{r}.txt").read_text() for r in (0, 1)] == [expected, expected]
    assert os.path.basename(expected) == "step-0000002"
