"""Prefix-shared attention: G completions per prompt attend to their prompt's KV held once.

A model concern that two callers share from below: the decoder (`grporec.decode`, whose KV cache
keeps each prompt's KV once per prompt) and training (`grporec.logprobs`, whose forward over the
completion tokens reads each prompt's KV once; `grporec.models.recompute` replays it under
activation checkpointing). `shared_prefix_attention`, registered as a transformers attention
function, attends each row's query to its prompt's KV and its own tail, so the prompt is neither
copied G times nor read G times. Exact up to float rounding (tests compare it with plain
forwards); used only for architectures listed in `SHARED_PREFIX_MODELS`, where that was verified.
"""
from __future__ import annotations

import contextlib
import contextvars

import torch
from transformers import AttentionInterface

SHARED_PREFIX_ATTENTION = "grporec_shared_prefix"
# Architectures whose attention is plain scaled-dot-product over (rotated) K/V, with no sliding
# window, softcap or sinks: exactly what `shared_prefix_attention` computes.
SHARED_PREFIX_MODELS = frozenset({"qwen2", "qwen3", "llama"})
_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("grporec_shared_prefix_cache", default=None)


class SharedPrefixContext:
    """While active, `shared_prefix_attention` reads each layer's prompt KV and the masks from here.

    prompt_kv: per layer, the prompt's (keys, values) once per prompt, [B, kv_heads, T, head_dim].
    prompt_mask: [B, T], 0 at left padding.
    The tail has no mask: completions are padded on the right only, so a real position's query
    never reaches a padded key through the causal order (and padded positions carry no loss).
    """

    def __init__(self, prompt_kv: list[tuple[torch.Tensor, torch.Tensor]], prompt_mask: torch.Tensor):
        self.prompt_kv = prompt_kv
        self.prompt_bias = torch.zeros(prompt_mask.shape, dtype=torch.float32, device=prompt_mask.device)
        self.prompt_bias.masked_fill_(prompt_mask == 0, float("-inf"))
        self.prompt_bias = self.prompt_bias[:, None, None, :]  # [B, 1, 1, T]

    def __enter__(self):
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc):
        _ACTIVE.reset(self._token)


def shared_prefix_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention of each of B*G rows' q queries to its prompt's shared KV plus its own tail.

    query [B*G, H, q, D]; key/value [B*G, KV, n, D]: the row's tail, whose last q positions are the
    queries' own (decoding: the cached tail returned by the layer's update, q = 1; training: the
    completion tokens of this forward, n = q). Query i sees every prompt position and tail
    positions up to its own (causal). Returns [B*G, q, H, D], as transformers' attention
    functions do. The transformers mask (`attention_mask`) is not used: this name has no mask
    function registered, so none is built.
    """
    ctx = _ACTIVE.get()
    if ctx is None:
        raise RuntimeError(f"{SHARED_PREFIX_ATTENTION} attention used outside a SharedPrefixContext")
    if dropout:
        raise RuntimeError(f"{SHARED_PREFIX_ATTENTION} attention has no attention dropout (got {dropout})")
    pk, pv = ctx.prompt_kv[module.layer_idx]  # [B, KV, T, D]
    R, H, q, D = query.shape
    B, KV, T, _ = pk.shape
    G, rep, n = R // B, H // KV, key.shape[2]
    scale = scaling if scaling is not None else D ** -0.5
    # Query head h uses KV head h // rep (as transformers' repeat_kv lays them out). A prompt's G rows
    # become one matrix of G*q*rep queries against its T keys; the (q, rep) order follows the memory
    # layout transformers gives the query ([R, q, H, D] transposed).
    qx = query.transpose(1, 2).reshape(R, q, KV, rep, D)
    q_groups = qx.view(B, G, q, KV, rep, D).permute(0, 3, 1, 2, 4, 5).reshape(B, KV, G * q * rep, D)
    s_prompt = torch.matmul(q_groups, pk.transpose(-1, -2)).float() * scale + ctx.prompt_bias  # [B, KV, G*q*rep, T]
    q_rows = qx.permute(0, 2, 1, 3, 4).reshape(R, KV, q * rep, D)
    s_tail = torch.matmul(q_rows, key.transpose(-1, -2)).float() * scale  # [R, KV, q*rep, n]
    if q > 1:  # query i (at tail position n - q + i) sees tail positions <= its own
        i, j = torch.arange(q, device=query.device)[:, None, None], torch.arange(n, device=query.device)
        s_tail = s_tail.view(R, KV, q, rep, n).masked_fill(j > n - q + i, float("-inf"))
    s_tail = s_tail.reshape(B, G, KV, q * rep, n).permute(0, 2, 1, 3, 4).reshape(B, KV, G * q * rep, n)
    p = torch.cat([s_prompt, s_tail], dim=-1).softmax(-1).to(value.dtype)  # fp32 softmax
    out = torch.matmul(p[..., :T], pv)  # [B, KV, G*q*rep, D]
    out = out.view(B, KV, G, q, rep, D).permute(0, 2, 3, 1, 4, 5).reshape(R, q, H, D)
    p_tail = p[..., T:].reshape(B, KV, G, q * rep, n).permute(0, 2, 1, 3, 4).reshape(R, KV, q * rep, n)
    tail = torch.matmul(p_tail, value)  # [R, KV, q*rep, D]
    return out + tail.view(R, KV, q, rep, D).permute(0, 2, 1, 3, 4).reshape(R, q, H, D), None


AttentionInterface.register(SHARED_PREFIX_ATTENTION, shared_prefix_attention)


def supports_shared_prefix(model: torch.nn.Module) -> bool:
    """True for architectures where shared-prefix attention was verified equal to the model's own."""
    cfg = getattr(model, "config", None)
    return (
        cfg is not None
        and getattr(cfg, "model_type", None) in SHARED_PREFIX_MODELS
        and not getattr(cfg, "use_sliding_window", False)
        and getattr(cfg, "_attn_implementation", None) in ("sdpa", "eager")
        and not (model.training and getattr(cfg, "attention_dropout", 0.0))  # it has no dropout
    )


@contextlib.contextmanager
def attention(module: torch.nn.Module, context: SharedPrefixContext | None):
    """Run the attention of `module` (a model, or one of its attention layers: they share one config)
    as `shared_prefix_attention` over `context` (None: unchanged)."""
    if context is None:
        yield
        return
    config = module.config
    previous = config._attn_implementation
    config._attn_implementation = SHARED_PREFIX_ATTENTION
    try:
        with context:
            yield
    finally:
        config._attn_implementation = previous


def active_context() -> SharedPrefixContext | None:
    """The shared-prefix context of the forward running now (activation checkpointing replays it)."""
    return _ACTIVE.get()
