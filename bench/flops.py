"""FLOPs of a GRPO step's model compute, from the model's shape and the tensors the step processed.

Matmul FLOPs only (2 per multiply-add; norms, rotary, softmax and the optimizer are left out, as
MFU figures usually do). For a Qwen2-style decoder with hidden size H, MLP width I, n_q query
heads and n_kv key/value heads of size d, per decoder layer and token:

    linear    2 * (H * n_q d  +  2 * H * n_kv d  +  n_q d * H  +  3 * H * I)      q, k, v, o, gate/up/down
    attention 4 * n_q d * c                                                        QK^T and AV over c keys

plus 2 * H * V per position whose logits are computed (the LM head). Counted as the dense kernels
process them (what torch.utils.flop_counter counts, and tests/test_bench_flops.py checks): a
forward of B prompts of T tokens (padded width) scores every query against all T keys, masked or
not; the L - 1 completion tokens run through the cache together, each against T + L - 1 keys.
(A causal flash kernel skips the masked half; at T ~ 120 and H ~ 900 attention is ~1% of the
total either way.) Backward is twice the
forward, so the policy phase (forward + backward) is 3x its forward, 4x with activation
checkpointing (the forward runs again).

Phases, with B prompts, G completions each, completions of L tokens:
- rollout: a prefill of B x T, then L - 1 decode steps of B x G rows (head at every row);
- reference (and old policy): prefill of B x T (head at the last position), the B x G completion
  rows' first L - 1 tokens through the cache (head at each);
- policy: the same forward with grad, x 3.
"""
from __future__ import annotations

from dataclasses import dataclass

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, from the vendors' data sheets.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12}


def device_peak(name: str) -> float | None:
    """The bf16 peak of a CUDA device by its name ("NVIDIA H100 80GB HBM3" -> 989e12), or None."""
    for key, peak in PEAK_BF16.items():
        if key in name:
            return peak
    return None


@dataclass(frozen=True)
class Shape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def of(cls, config) -> "Shape":
        """From an HF model config (Qwen2/Llama field names)."""
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return cls(config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.num_attention_heads,
                   config.num_key_value_heads, head_dim, config.vocab_size)

    def linear_per_token(self) -> int:
        H, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        return 2 * self.layers * (H * q + 2 * H * kv + q * H + 3 * H * self.intermediate)

    def attention(self, keys: int) -> int:
        """One query token attending to `keys` positions, over all layers."""
        return 4 * self.layers * self.heads * self.head_dim * keys

    def head(self, positions: int) -> int:
        return 2 * self.hidden * self.vocab * positions


def prefill(s: Shape, B: int, T: int, head_positions: int) -> int:
    """B prompts of T tokens (every query against the T keys) and the LM head at `head_positions` positions."""
    return B * T * s.linear_per_token() + B * T * s.attention(T) + s.head(head_positions)


def through_cache(s: Shape, rows: int, T: int, L: int) -> int:
    """`rows` completions' first L - 1 tokens after a T-token prompt in the cache, head at each."""
    tokens = rows * (L - 1)
    return tokens * s.linear_per_token() + tokens * s.attention(T + L - 1) + s.head(tokens)


def logps_forward(s: Shape, B: int, T: int, rows: int, L: int) -> int:
    """The prompt-shared log-prob forward (grporec.logprobs.completion_logps) of one micro-batch."""
    return prefill(s, B, T, B) + through_cache(s, rows, T, L)


def rollout(s: Shape, B: int, T: int, rows: int, L: int) -> int:
    """Decoding L tokens for `rows` rows of B prompts: the same count (a prefill whose last position
    predicts token 0, then L - 1 one-token steps of every row through the cache)."""
    return logps_forward(s, B, T, rows, L)


def policy(s: Shape, B: int, T: int, rows: int, L: int, recompute: bool = False) -> int:
    return (4 if recompute else 3) * logps_forward(s, B, T, rows, L)
