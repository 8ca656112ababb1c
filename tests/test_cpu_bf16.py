"""bf16 autocast on the CPU (`train.cpu_mixed_precision`): on only when asked, SDPA's math kernel
inside it, the same loss up to bf16 rounding, fp32 master weights."""
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from grporec import dist, sft
from grporec.config import TrainConfig
from grporec.data.datasets import Sample
from grporec.models.format import build_format
from grporec.models.policy import load_policy
from test_sft import ENV, sft_cfg


def test_cpu_autocast_only_when_asked_and_with_the_math_attention_kernel():
    x, w = torch.randn(4, 8), torch.randn(8, 8)
    with dist.autocast(ENV, TrainConfig()):  # the default: fp32 on the CPU, whatever mixed_precision says
        assert (x @ w).dtype == torch.float32
    with dist.autocast(dist.DistEnv(0, 2, 0, torch.device("cpu"), True), TrainConfig(cpu_mixed_precision=True)):
        assert (x @ w).dtype == torch.float32  # under torchrun FSDP2 casts, never autocast
    assert torch.backends.cuda.flash_sdp_enabled()
    with dist.autocast(ENV, TrainConfig(cpu_mixed_precision=True)):
        assert (x @ w).dtype == torch.bfloat16
        # the flash kernel's CPU backward is slow in bf16 (bench/cpu_bf16.py): only the math one is allowed
        assert not torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()
        q = torch.randn(2, 2, 5, 4, dtype=torch.bfloat16)
        assert F.scaled_dot_product_attention(q, q, q).dtype == torch.bfloat16
    assert torch.backends.cuda.flash_sdp_enabled()  # restored on leaving
    assert (x @ w).dtype == torch.float32


def test_bf16_loss_and_gradient_equal_fp32_up_to_rounding(tiny_model_dir):
    model, tok = load_policy(tiny_model_dir)
    fmt = build_format(tok)
    samples = [Sample("### User Input: \nWhich item has the title: a?\n\n### Response:\n", "<a_1>\n", "<a_1>", (), "t"),
               Sample("### User Input: \nx y z\n\n### Response:\n", "some title words\n", "<a_1>", (), "t")]
    batch = sft.encode(fmt, samples, "cpu")

    def loss_and_grad(train):
        model.zero_grad()
        with dist.autocast(ENV, train):
            loss, n = sft.completion_loss_sum(model, *batch)
        (loss / n).backward()
        return loss.item() / int(n), model.get_input_embeddings().weight.grad.clone()

    l32, g32 = loss_and_grad(TrainConfig())
    l16, g16 = loss_and_grad(TrainConfig(cpu_mixed_precision=True))
    # bf16 keeps 8 significant bits (relative rounding 2^-9 ~ 0.2% an operation): the loss moves by well
    # under 1% but does move (an autocast that did nothing would give the fp32 loss to the last bit)
    assert l16 == pytest.approx(l32, rel=1e-2) and l16 != l32
    cos = F.cosine_similarity(g16.flatten(), g32.flatten(), dim=0).item()
    assert cos > 0.99, cos


def test_sft_under_cpu_bf16_learns_and_saves_fp32_weights(tiny_cfg, tmp_path):
    cfg = sft_cfg(tiny_cfg, tmp_path / "sft", "sft.train.max_steps=30", "sft.train.eval_steps=30", "sft.patience=0",
                  "sft.train.cpu_mixed_precision=true")
    r = sft.train_sft(cfg, ENV)
    losses = [h["loss"] for h in r["history"]]
    # as test_sft's fp32 run: the last 5 losses' mean about 0.75x the first 5's (a step that did not learn: ~1x)
    assert sum(losses[-5:]) / 5 < 0.85 * sum(losses[:5]) / 5
    weights = load_file(str(r["best"] / "model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.float32}  # the master weights, never bf16 copies
