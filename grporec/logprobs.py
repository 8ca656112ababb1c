"""Per-token log-probs of completions under a model, from one forward over prompt + completion.

Used for the policy (with grad), the reference and the old policy (without). The prompt rows
[B, T] are repeated G times to line up with the completions [B*G, L]; position ids follow the
left-padded attention mask, as in decoding, so the values equal what the decoder saw.
"""
from __future__ import annotations

import inspect

import torch

from grporec.decode.rollout import positions


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
    rows = torch.arange(B, device=prompt_ids.device).repeat_interleave(N // B)
    ids = torch.cat([prompt_ids[rows], completion_ids], dim=1)  # [N, T+L]
    mask = torch.cat([prompt_mask[rows], completion_mask.to(prompt_mask.dtype)], dim=1)
    kwargs = {"logits_to_keep": L + 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask), use_cache=False, **kwargs).logits
    logits = logits[:, -(L + 1):-1].float()  # position t predicts completion token t
    if temperature != 1.0:
        logits = logits / temperature
    return logits.log_softmax(-1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)  # [N, L]
