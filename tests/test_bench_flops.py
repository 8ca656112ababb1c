"""bench/flops.py's FLOP count (the MFU figures' numerator) against hand arithmetic and against
torch's own FLOP counter over the real prompt-shared log-prob forward and backward."""
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import Qwen2Config, Qwen2ForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import flops as F  # noqa: E402

from grporec.logprobs import completion_logps  # noqa: E402


def test_per_token_counts_by_hand():
    s = F.Shape(hidden=4, intermediate=8, layers=1, heads=2, kv_heads=1, head_dim=2, vocab=10)
    # q 4x4, k and v 4x2 each, o 4x4, gate/up/down 4x8: 16 + 16 + 16 + 96 = 144 multiply-adds per token
    assert s.linear_per_token() == 288
    assert s.attention(5) == 4 * 1 * 2 * 2 * 5  # QK^T and AV: 2 x 2 x (n_q d = 4) x 5 keys
    assert s.head(3) == 2 * 4 * 10 * 3
    # B=2 prompts of T=3: 6 tokens x 288, each against 3 keys (48 each), the head at 2 positions (80 each)
    assert F.prefill(s, 2, 3, 2) == 6 * 288 + 6 * 48 + 160
    assert F.policy(s, 2, 3, 4, 2) == 3 * F.logps_forward(s, 2, 3, 4, 2)
    assert F.device_peak("NVIDIA H100 80GB HBM3") == 989e12 and F.device_peak("some CPU") is None


@pytest.mark.parametrize("backward", [False, True])
def test_the_count_is_what_torch_counts_for_the_log_prob_forward(backward):
    cfg = Qwen2Config(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True)
    torch.manual_seed(0)
    cfg._attn_implementation = "eager"  # attention as plain matmuls, which the counter sees (CPU sdpa it does not)
    model = Qwen2ForCausalLM(cfg).train(backward)
    B, T, G, L = 3, 7, 4, 5
    prompt = torch.randint(1, 96, (B, T))
    completion = torch.randint(1, 96, (B * G, L))
    with FlopCounterMode(display=False) as counter:
        lp = completion_logps(model, prompt, torch.ones_like(prompt), completion, torch.ones_like(completion))
        if backward:
            lp.sum().backward()
    s = F.Shape.of(cfg)
    want = F.policy(s, B, T, B * G, L) if backward else F.logps_forward(s, B, T, B * G, L)
    # exact up to what the count leaves out by design: nothing else in the model is a matmul
    assert counter.get_total_flops() == want
