"""Per-token log-probs of completions under a model: the policy (with grad), reference and old policy.

`completion_logps` runs each prompt once and shares it with its G completions: a forward over
the B prompts fills a KV cache, the cache is expanded to the B*G completion rows by index (a
differentiable gather, so the G completions' gradients add up in the one prompt pass), and a
second forward runs only the L completion tokens. This is mathematically the forward over
prompt + completion for every row, at about 1/G of the prompt cost; `full_completion_logps`
is that plain forward, kept as the reference the tests compare against. Position ids follow
the left-padded attention mask, as in decoding, so the values equal what the decoder saw.
"""
from __future__ import annotations

import torch
from transformers import DynamicCache

from grporec.decode.rollout import forward_kwargs, positions, prompt_rows


def _gather(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    return logits.log_softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def completion_logps(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """log p(completion token | prompt, previous completion tokens), [B*G, L] fp32.

    Args:
        prompt_ids, prompt_mask: [B, T] left-padded.
        completion_ids, completion_mask: [B*G, L], group by group.
        temperature: divides the logits (as when the completions were sampled at it).
    """
    B, N, L = prompt_ids.shape[0], completion_ids.shape[0], completion_ids.shape[1]
    rows = prompt_rows(B, N // B, prompt_ids.device)  # [B*G] prompt of each row
    cache = DynamicCache()
    first = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=positions(prompt_mask),
                  use_cache=True, **forward_kwargs(model, cache, keep_last=1))
    first_logits = first.logits[:, -1][rows]  # [B*G, V]: predicts completion token 0
    if L == 1:
        return _gather(first_logits.unsqueeze(1), completion_ids, temperature)
    cache.reorder_cache(rows)  # [B] -> [B*G] rows, differentiable
    mask = torch.cat([prompt_mask[rows], completion_mask[:, :-1].to(prompt_mask.dtype)], dim=1)
    pos = prompt_mask.sum(-1)[rows].unsqueeze(1) + torch.arange(L - 1, device=prompt_ids.device)  # [B*G, L-1]
    rest = model(input_ids=completion_ids[:, :-1], attention_mask=mask, position_ids=pos, use_cache=True,
                 **forward_kwargs(model, cache)).logits  # [B*G, L-1, V]: predict completion tokens 1..L-1
    return _gather(torch.cat([first_logits.unsqueeze(1), rest], dim=1), completion_ids, temperature)


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
    return _gather(logits[:, -(L + 1):-1], completion_ids, temperature)
