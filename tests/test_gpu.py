"""CUDA-only checks (skipped without a GPU; CI has none): the decoder and one GRPO step on the device."""
import pytest
import torch

from grporec import dist, loop
from grporec.decode import SidTrie, beam_search, left_pad
from test_decode import PAD, PROMPTS, random_catalog, tiny_lm
from test_loop import tiny_loop_cfg

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
