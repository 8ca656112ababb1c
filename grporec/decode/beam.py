"""Constrained beam search over the SID trie: exact, always valid, one prefill per prompt.

At each of the trie's L steps: full-vocabulary log-softmax of the last position (fp32), gather
the C_d columns the trie allows at this depth (-inf where a row's state has no such child),
take the top G per prompt over (beams x columns), and reorder the KV cache by index. A beam's
score is the sum of its token log-probs, with no length penalty (completions have one length,
or are padded after EOS at score 0). When a prompt has fewer than G valid continuations at some
step, the missing beams are returned with `valid=False` and score -inf; no row is ever decoded
unconstrained. Results are sorted by score, descending, within each group.
"""
from __future__ import annotations

import torch

from grporec.decode.rollout import Rollout
from grporec.decode.stepper import Stepper
from grporec.decode.trie import SidTrie

NEG_INF = float("-inf")


@torch.no_grad()
def beam_search(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    trie: SidTrie,
    num_beams: int,
    constrained: bool = True,
    shared_prefix: bool | None = None,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
) -> Rollout:
    """Top-`num_beams` catalog completions per prompt.

    Args:
        model: HF causal LM (any whose forward takes `past_key_values`), in eval mode.
        prompt_ids, prompt_mask: [B, T] left-padded prompts.
        trie: the catalog's SID trie, on the model's device.
        num_beams: G.
        constrained: False decodes over the full vocabulary for the same L steps (only to
            measure what masking costs; the result may name no item).
        shared_prefix: prefix-shared attention after the prefill (None: where supported).
    Returns:
        Rollout with G rows per prompt, best first.
    """
    B, G, L = prompt_ids.shape[0], num_beams, trie.depth
    device = prompt_ids.device
    stepper = Stepper(model, shared_prefix)
    logp = (stepper.prefill(prompt_ids, prompt_mask) / temperature).log_softmax(-1)  # [B, V]
    state = torch.zeros(B, dtype=torch.long, device=device)  # trie state per row (root)
    score = torch.zeros(B, device=device)
    tokens = torch.empty(B, 0, dtype=torch.long, device=device)
    token_lp = torch.empty(B, 0, device=device)
    is_pad = torch.empty(B, 0, dtype=torch.bool, device=device)
    beams = 1  # live beams per prompt: 1 after prefill, G after the first step
    for d in range(L):
        if constrained:
            child, ok = trie.allowed(d, state)  # [B*beams, C]
            col_tok, col_pad = trie.emitted_tokens(d)  # [C]
            step_lp = logp[:, col_tok].masked_fill(col_pad, 0.0).masked_fill(~ok, NEG_INF)
        else:
            step_lp = logp
            col_tok = torch.arange(logp.shape[1], device=device)
            col_pad = torch.zeros_like(col_tok, dtype=torch.bool)
        C = step_lp.shape[1]
        cand = (score.unsqueeze(1) + step_lp).view(B, beams * C)  # [B, beams*C]
        if beams * C < G:  # fewer continuations than beams: the rest stay invalid
            cand = torch.cat([cand, cand.new_full((B, G - beams * C), NEG_INF)], dim=1)
        if generator is None:
            top, flat = cand.topk(G, dim=1)  # [B, G], sorted descending
        else:  # draw 2G without replacement in proportion to exp(cand), keep the best G of them
            gumbel = -torch.empty_like(cand).exponential_(generator=generator).log()
            _, drawn = (cand + gumbel).topk(min(2 * G, cand.shape[1]), dim=1)
            top, order = cand.gather(1, drawn).topk(G, dim=1)
            flat = drawn.gather(1, order)
        parent = (flat // C).clamp(max=beams - 1)
        col = (flat % C).view(-1)  # [B*G]
        rows = (torch.arange(B, device=device).unsqueeze(1) * beams + parent).view(-1)  # [B*G]
        alive = torch.isfinite(top).view(-1)
        chosen_lp = step_lp[rows, col]
        if constrained:
            state = torch.where(alive, child[rows, col].long(), torch.full_like(col, -1))
        tokens = torch.cat([tokens[rows], col_tok[col].unsqueeze(1)], dim=1)
        token_lp = torch.cat([token_lp[rows], torch.where(alive, chosen_lp, 0.0).unsqueeze(1)], dim=1)
        is_pad = torch.cat([is_pad[rows], col_pad[col].unsqueeze(1)], dim=1)
        score = top.view(-1)
        beams = G
        if d < L - 1:  # no forward after the last token
            if d == 0:
                stepper.expand(G, max_new=L)  # each prompt's KV copied to its G beams
            else:
                stepper.reorder_within_groups(rows)
            logp = (stepper.step(tokens[:, -1]) / temperature).log_softmax(-1)
    return finish_rollout(prompt_ids, prompt_mask, trie, tokens, token_lp, is_pad, score, state, G, constrained)


def finish_rollout(prompt_ids, prompt_mask, trie, tokens, token_lp, is_pad, score, state, G, constrained) -> Rollout:
    """Assemble a Rollout from decoded tokens [B*G, L], their log-probs and final trie states."""
    valid = torch.isfinite(score) if constrained else torch.ones_like(score, dtype=torch.bool)
    labels = trie.label_of(state) if constrained else torch.full_like(state, -1)
    mask = (~is_pad & valid.unsqueeze(1)).long()
    tokens = torch.where(mask.bool(), tokens, trie.pad_id)
    names = trie.names_of(labels)
    return Rollout(prompt_ids, prompt_mask, tokens, mask, token_lp * mask, score, valid, labels, names, G,
                   level_codes=trie.codes_of(labels))
