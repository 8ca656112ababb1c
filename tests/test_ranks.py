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


def test_a_sharded_checkpoint_of_two_ranks_resumes_exactly_on_two_and_on_one(tiny_cfg, tiny_model_dir, tmp_path):
    """Item 10. Each rank writes its own shards of policy, optimizer and (synced) reference with
    DCP, nothing gathered but the HF policy. Stopped after step 2 and resumed on 2 ranks, the run
    is bit-identical to the uninterrupted 2-rank run; resumed in one process (DCP reshards), it
    matches to the 2 ranks == 1 process tolerance of test_loop_processes (1e-5)."""
    import shutil

    import pytest
    import torch

    from grporec.checkpoint import latest_checkpoint
    from conftest import params, reference_params, run_loop

    def cfg(name, *extra):
        return tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / name, "train.max_steps=4", "rl.ref_sync_steps=1", *extra)

    full = run_loop(cfg("full"), 2, 29533)
    assert len(run_loop(cfg("part", "train.stop_after=2"), 2, 29534)) == 2
    ckpt = latest_checkpoint(tmp_path / "part")
    assert sorted(p.name for p in (ckpt / "state").iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert "optimizer" not in torch.load(ckpt / "trainer_state.pt", weights_only=False)  # not gathered onto rank 0
    shutil.copytree(tmp_path / "part", tmp_path / "one")
    on_two = run_loop(cfg("part"), 2, 29535)  # train.resume=auto
    on_one = run_loop(cfg("one"))
    last = {name: latest_checkpoint(tmp_path / name) for name in ("full", "part", "one")}
    assert [r["step"] for r in on_two] == [r["step"] for r in on_one] == [1, 2, 3, 4]
    for a, b in zip(full, on_two):
        assert (b["loss"], b["reward"], b["kl"]) == (a["loss"], a["reward"], a["kl"])
    for a, b in zip(full, on_one):
        for k in ("loss", "reward", "kl"):
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-8), (k, a, b)
    p_full, p_two, p_one = (params(last[n] / "policy") for n in ("full", "part", "one"))
    r_full, r_two, r_one = (reference_params(last[n]) for n in ("full", "part", "one"))
    for k in p_full:
        assert torch.equal(p_two[k], p_full[k]) and torch.equal(r_two[k], r_full[k]), k
        torch.testing.assert_close(p_one[k], p_full[k], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(r_one[k], r_full[k], atol=1e-5, rtol=1e-5)


PLACE_PROBE = '''
import sys
from pathlib import Path

import torch
from grporec import dist
from grporec.models.placement import place
from grporec.models.policy import load_policy

out, model_dir = Path(sys.argv[1]), sys.argv[2]
env = dist.setup()


def build():
    (out / f"built-on-rank{env.rank}").touch()
    return load_policy(model_dir)


model, tokenizer = place(build, env, mixed_precision=False)
ids = torch.tensor([[5, 9, 13, 2, 7]])
torch.save({"logits": model(ids).logits.detach(), "vocab": len(tokenizer)}, out / f"rank{env.rank}.pt")
del model  # the sharded model holds the group: freed here, not at interpreter exit after teardown
dist.teardown()
'''


def test_under_torchrun_only_rank_0_reads_the_weights_and_every_shard_gets_them(tiny_model_dir, tmp_path):
    """Item 10, loading. Rank 1 builds the model on the meta device and receives its shards from
    rank 0 (before the fix every rank read the full model): only rank 0 ran `build`, and the sharded
    model computes the logits of the model read in one process, on both ranks, rotary buffers
    included (they are not in the state dict)."""
    import torch

    from grporec.models.policy import load_policy

    (tmp_path / "probe.py").write_text(PLACE_PROBE)
    procs = launch_two_ranks([str(tmp_path / "probe.py"), str(tmp_path), str(tiny_model_dir)], ROOT, 29536)
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted(p.name for p in tmp_path.glob("built-on-*")) == ["built-on-rank0"]
    model, tokenizer = load_policy(tiny_model_dir)
    expected = model(torch.tensor([[5, 9, 13, 2, 7]])).logits.detach()
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["vocab"] == len(tokenizer)
        torch.testing.assert_close(got["logits"], expected, atol=1e-6, rtol=1e-6)
