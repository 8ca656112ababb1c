"""CUDA-only checks (skipped without a GPU; CI has none): the decoder, bf16, one GRPO step, FSDP2 over nccl."""
import pytest
import torch

from grporec import dist, loop
from grporec.decode import SidTrie, beam_search, left_pad
from test_decode import PAD, PROMPTS, random_catalog, tiny_lm
from conftest import run_loop, tiny_loop_cfg

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("shared", [False, True])
def test_cuda_fp32_beam_search_equals_cpu(shared):
    model = tiny_lm(31)
    trie = SidTrie.build(random_catalog(31, 20), PAD)
    ids, mask = left_pad(PROMPTS, PAD)
    cpu = beam_search(model, ids, mask, trie, 6, shared_prefix=shared)
    gpu = beam_search(model.cuda(), ids.cuda(), mask.cuda(), trie.to("cuda"), 6, shared_prefix=shared)
    assert gpu.labels.cpu().tolist() == cpu.labels.tolist()
    torch.testing.assert_close(gpu.scores.cpu(), cpu.scores, atol=1e-4, rtol=1e-4)


def test_cuda_bf16_beam_search_is_valid():
    model = tiny_lm(32).cuda().to(torch.bfloat16)
    seqs = random_catalog(32, 20)
    trie = SidTrie.build(seqs, PAD, device="cuda")
    r = beam_search(model, *left_pad(PROMPTS, PAD, "cuda"), trie, 8)
    assert r.valid.all() and all(row in seqs for row in r.completion_ids.cpu().tolist())


def test_one_grpo_step_on_cuda(tiny_cfg, tiny_model_dir, tmp_path):
    env = dist.DistEnv(0, 1, 0, torch.device("cuda"))
    result = loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=1"), env)
    assert result["steps"] == 1 and torch.isfinite(torch.tensor(result["history"][0]["loss"]))


@pytest.mark.parametrize("reference_dtype", ["float32", "bfloat16"])
def test_bf16_grpo_steps_with_reference_on_cuda(tiny_cfg, tiny_model_dir, tmp_path, reference_dtype):
    """Two bf16-autocast steps through the loop with the reference model loaded: finite, the
    reference is used (KL > 0 after the first update).

    At step 1 policy and reference hold the same weights. An fp32 reference computes exactly as the
    fp32-master policy under autocast: KL exactly 0. A bf16 reference rounds its weights first
    (relative error up to 2^-9), which moves each token log-prob by ~1e-3 at most on this tiny model;
    k3 ~ d^2 / 2 is then ~1e-6 or less (measured on an H200: 2.6e-7), so the bound is 1e-5, far below
    step 2's KL after an update at rl.beta=0.04."""
    env = dist.DistEnv(0, 1, 0, torch.device("cuda"))
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=2", "train.mixed_precision=true",
                        "rl.beta=0.04", f"rl.reference_dtype={reference_dtype}")
    result = loop.train(cfg, env)
    h = result["history"]
    assert result["reference_loaded"] and result["steps"] == 2
    assert all(torch.isfinite(torch.tensor([x["loss"], x["kl"], x["grad_norm"]])).all() for x in h)
    if reference_dtype == "float32":
        assert h[0]["kl"] == 0.0  # same weights, same compute at step 1
    else:
        assert 0.0 <= h[0]["kl"] < 1e-5
    assert h[1]["kl"] > h[0]["kl"]  # the policy moved before step 2


def test_torchrun_one_rank_nccl_fsdp2_matches_one_process(tiny_cfg, tiny_model_dir, tmp_path):
    """torchrun --nproc_per_node=1 (nccl process group, FSDP2 with a bf16 MixedPrecisionPolicy)
    against one process (bf16 autocast): same prompts, same bf16 compute of the same fp32 weights.

    Tolerance: the first step's rewards must be equal (the same bf16 compute of the same weights
    decodes the same completions); loss and KL agree to 1e-5 absolute;
    the gradient norm to 2% (FSDP's bf16 parameter copies and fp32 gradient reduction round in a
    different order from autocast's per-op casts)."""
    runs = {name: run_loop(tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / name, "train.max_steps=2",
                                         "train.mixed_precision=true"), ranks, port)
            for name, ranks, port in (("one", None, 0), ("fsdp", 1, 29531))}
    a, b = runs["one"][0], runs["fsdp"][0]
    assert b["reward"] == a["reward"]
    assert b["loss"] == pytest.approx(a["loss"], abs=1e-5) and b["kl"] == pytest.approx(a["kl"], abs=1e-5)
    assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=0.02)
