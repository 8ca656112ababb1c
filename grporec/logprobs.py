"""Per-token log-probs of completions under a model: the policy (with grad), reference and old policy.

`completion_logps` runs each prompt once and shares it with its G completions: a forward over
the B prompts fills a KV cache, and a second forward runs only the L completion tokens of the
B*G rows against it. Where the architecture allows, that second forward reads each prompt's KV
once, in place (prefix-shared attention, as the decoder's); elsewhere the cache is expanded to
the B*G rows by index (a differentiable gather) under a dense mask. Either way the G
completions' gradients add up in the one prompt pass. This is mathematically the forward over
prompt + completion for every row, at about 1/G of the prompt cost; `full_completion_logps` is
that plain forward, kept as the reference the tests compare against. Position ids follow the
left-padded attention mask, as in decoding, so the values equal what the decoder saw.
"""
from __future__ import annotations

import torch
from transformers import DynamicCache

from grporec.models.attention import SharedPrefixContext, attention, supports_shared_prefix
from grporec.models.inputs import forward_kwargs, positions, prompt_rows


# Rows of logits turned into fp32 at a time by the log-prob head: 2**26 elements (256 MiB) is 441 rows
# of a 152k vocabulary; few enough chunks that launches do not matter, small enough to be noise in memory.
CHUNK_ELEMENTS = 2 ** 26


class _TokenLogps(torch.autograd.Function):
    """log softmax(z / T)[token] as logsumexp-minus-gather, chunk by chunk over rows.

    `log_softmax(z.float() / T).gather(...)` keeps three fp32 [N, L, V] tensors alive (the cast,
    the scaled logits, and the log-softmax saved for backward); with a 152k vocabulary that is
    most of a step's activation memory. Here the forward keeps only the logits as they came (bf16
    under autocast) and one fp32 logsumexp per row; the backward rebuilds the softmax chunk by chunk:
    d logp / dz_j = ([j == token] - softmax(z / T)_j) / T.
    """

    @staticmethod
    def forward(ctx, logits, tokens, temperature, chunk):
        V = logits.shape[-1]
        flat, tok = logits.reshape(-1, V), tokens.reshape(-1, 1)
        compute = torch.promote_types(logits.dtype, torch.float32)  # fp32, or fp64 for gradcheck
        out = torch.empty(flat.shape[0], dtype=compute, device=logits.device)
        lse = torch.empty_like(out)
        for i in range(0, flat.shape[0], chunk):
            z = flat[i:i + chunk].to(compute)  # a copy for bf16 logits (fp32 ones are read as they are)
            if temperature != 1.0:
                z = z / temperature
            lse[i:i + chunk] = torch.logsumexp(z, -1)
            out[i:i + chunk] = z.gather(-1, tok[i:i + chunk]).squeeze(-1) - lse[i:i + chunk]
        ctx.save_for_backward(logits, tokens, lse)
        ctx.temperature, ctx.chunk = temperature, chunk
        return out.view(tokens.shape)

    @staticmethod
    def backward(ctx, grad_out):
        logits, tokens, lse = ctx.saved_tensors
        T, chunk, V = ctx.temperature, ctx.chunk, logits.shape[-1]
        flat, tok, g = logits.reshape(-1, V), tokens.reshape(-1, 1), grad_out.reshape(-1, 1).to(lse.dtype)
        grad = torch.empty_like(flat)
        for i in range(0, flat.shape[0], chunk):
            gi = flat[i:i + chunk].to(lse.dtype, copy=True)  # one fp32 buffer per chunk, worked in place
            if T != 1.0:
                gi.div_(T)
            gi.sub_(lse[i:i + chunk, None]).exp_().mul_(-g[i:i + chunk])  # -g softmax
            gi.scatter_add_(-1, tok[i:i + chunk], g[i:i + chunk])  # + g at the token
            if T != 1.0:
                gi.div_(T)
            grad[i:i + chunk] = gi
        return grad.view_as(logits), None, None, None


def token_logps(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0,
                chunk_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """log softmax(logits / temperature) at `tokens`: [..., V], [...] -> [...] fp32 (fp64 for fp64
    logits), equal to `(logits.float() / T).log_softmax(-1).gather(...)` in value and gradient
    without any fp32 copy of the logits outliving a chunk of rows. Logits that fit in one chunk
    (the tiny model's, a few thousand rows of a 3k vocabulary) take that plain path itself: its
    fp32 copies are at most a chunk, and on a CPU it is ~20% faster than the chunked backward."""
    chunk = max(1, chunk_elements // logits.shape[-1])
    if tokens.numel() <= chunk:  # one chunk: nothing to save, and the fused log_softmax kernels are faster
        z = logits.float() if temperature == 1.0 else logits.float() / temperature
        return z.log_softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return _TokenLogps.apply(logits, tokens, temperature, chunk)


def completion_logps(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    temperature: float = 1.0,
    shared_prefix: bool | None = None,
) -> torch.Tensor:
    """log p(completion token | prompt, previous completion tokens), [B*G, L] fp32.

    Args:
        prompt_ids, prompt_mask: [B, T] left-padded.
        completion_ids, completion_mask: [B*G, L], group by group.
        temperature: divides the logits (as when the completions were sampled at it).
        shared_prefix: the completion forward attends to each prompt's KV once, in place, through
            `grporec.models.attention.shared_prefix_attention` (no G copies of the prompt KV, no dense mask);
            False copies the prompt KV to the G rows (a differentiable gather) and runs the model's
            own attention over a [B*G, T + L - 1] mask. None: shared where the architecture supports
            it (`supports_shared_prefix`). Both equal `full_completion_logps` to float rounding.
    """
    B, N, L = prompt_ids.shape[0], completion_ids.shape[0], completion_ids.shape[1]
    rows = prompt_rows(B, N // B, prompt_ids.device)  # [B*G] prompt of each row
    cache = DynamicCache()
    first = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions(prompt_mask),
                  use_cache=True, **forward_kwargs(model, cache, keep_last=1))
    # completion token 0, predicted by each prompt's last position: [B, V] scored for its G rows
    first_logps = token_logps(first.logits[:, -1][rows], completion_ids[:, 0], temperature).unsqueeze(1)
    if L == 1:
        return first_logps
    pos = prompt_mask.sum(-1)[rows].unsqueeze(1) + torch.arange(L - 1, device=prompt_ids.device)  # [B*G, L-1]
    tokens = completion_ids[:, :-1]  # predict completion tokens 1..L-1
    if supports_shared_prefix(model) if shared_prefix is None else shared_prefix:
        context = SharedPrefixContext([(layer.keys, layer.values) for layer in cache.layers], prompt_mask)
        with attention(model, context):  # no cache: each layer's keys and values are the tail itself
            rest = model(input_ids=tokens, position_ids=pos, use_cache=False).logits  # [B*G, L-1, V]
    else:
        cache.reorder_cache(rows)  # [B] -> [B*G] rows, differentiable
        mask = torch.cat([prompt_mask[rows], completion_mask[:, :-1].to(prompt_mask.dtype)], dim=1)
        rest = model(input_ids=tokens, attention_mask=mask, position_ids=pos, use_cache=True,
                     **forward_kwargs(model, cache)).logits
    return torch.cat([first_logps, token_logps(rest, completion_ids[:, 1:], temperature)], dim=1)


def full_completion_logps(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """The same values from one plain forward over prompt + completion for every row (reference)."""
    B, N, L = prompt_ids.shape[0], completion_ids.shape[0], completion_ids.shape[1]
    rows = prompt_rows(B, N // B, prompt_ids.device)
    ids = torch.cat([prompt_ids[rows], completion_ids], dim=1)  # [N, T+L]
    mask = torch.cat([prompt_mask[rows], completion_mask.to(prompt_mask.dtype)], dim=1)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask), use_cache=False).logits
    return token_logps(logits[:, -(L + 1):-1], completion_ids, temperature)
