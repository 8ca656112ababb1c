"""Step 5 of the loop, the policy update: a micro-batch's loss and the backward accumulated over
micro-batches.

`micro_loss` is the extension point of loss variants: a fork edits it (or assigns its own
function of the same signature to `grporec.grpo.update.micro_loss`, which `policy_backward` looks
up at each call); everything a loss needs is in the `MicroBatch`."""
from __future__ import annotations

import math

import torch

from grporec import dist
from grporec.config import Config
from grporec.grpo.batches import MicroBatch
from grporec.logprobs import completion_logps
from grporec.loss import grpo_loss


def micro_loss(policy, mb: MicroBatch, cfg: Config) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of one micro-batch and its metrics: the policy's per-token log-probs (prompt run
    once, shared by its G completions), then the GRPO loss. A loss variant forks this function;
    every metric it returns is averaged over the step and logged.

    With rl.nll_coef > 0 each prompt's ground-truth completion rides along as one more row of the
    same prompt-shared forward (G + 1 rows per prompt), and nll_coef x its mean token NLL is added
    (the NLL anchor of GRPO + NLL); `nll_target` is logged.
    """
    b, G = mb.prompt_ids.shape[0], mb.rows // mb.prompt_ids.shape[0]
    if cfg.rl.nll_coef > 0:
        L = mb.completion_ids.shape[1]
        ids = torch.cat([mb.completion_ids.view(b, G, L), mb.target_ids.unsqueeze(1)], 1).view(b * (G + 1), L)
        mask = torch.cat([mb.completion_mask.view(b, G, L), mb.target_mask.unsqueeze(1).to(mb.completion_mask.dtype)], 1)
        both = completion_logps(policy, mb.prompt_ids, mb.prompt_mask, ids, mask.view(b * (G + 1), L), mb.temperature)
        both = both.view(b, G + 1, L)
        logps, target_logps = both[:, :G].reshape(b * G, L), both[:, G]  # [b*G, L], [b, L]
    else:
        logps = completion_logps(policy, mb.prompt_ids, mb.prompt_mask, mb.completion_ids, mb.completion_mask, mb.temperature)
    loss, metrics = grpo_loss(logps, mb.ref_logps, mb.advantages, mb.completion_mask, cfg.rl.beta, old_logps=mb.old_logps,
                              loss_type=cfg.rl.loss_type, epsilon_low=cfg.rl.epsilon_low, epsilon_high=cfg.rl.epsilon_high,
                              kl_estimator=cfg.rl.kl_estimator)
    if cfg.rl.nll_coef > 0:
        tmask = mb.target_mask.float()
        nll = -(target_logps * tmask).sum() / tmask.sum().clamp(min=1)
        loss = loss + cfg.rl.nll_coef * nll
        metrics = {**metrics, "nll_target": nll.detach()}
    return loss, metrics


def policy_backward(policy, batches: list[MicroBatch], cfg: Config, env: dist.DistEnv) -> tuple[float, dict[str, float], bool]:
    """Loss over this rank's rows, accumulated over micro-batches, and its backward.

    Each micro-batch's loss is weighted by its share of the batch, so the summed gradient equals
    the full-batch gradient (and FSDP's average over ranks gives the global one): the share of
    sequences for grpo, dr_grpo and sequence; the share of tokens for token. Metrics are averaged
    with the share of rows, whatever keys `micro_loss` returns. Returns (this rank's loss, metrics,
    whether every micro-batch loss was finite on every rank).
    """
    n_rows = sum(mb.rows for mb in batches)
    shares = [mb.rows / n_rows for mb in batches]
    if cfg.rl.loss_type == "token":  # token share is global; one transfer of every micro-batch's count
        counts = torch.stack([mb.completion_mask.sum() for mb in batches]).tolist()
        mean_tokens = dist.all_reduce_sum(float(sum(counts)), env) / env.world_size
        shares = [c / mean_tokens for c in counts]
    # No host sync inside the loop (a `.item()` right after backward() would idle the GPU while
    # Python launches the next forward): losses and metrics stay on the device, one transfer at the end.
    on_device = []  # per micro-batch: its loss, then its metrics in `names` order
    names = []
    once = not cfg.train.reduce_every_micro_batch and hasattr(policy, "set_requires_gradient_sync")  # FSDP2 only
    for i, (mb, share) in enumerate(zip(batches, shares)):
        if once:  # reduce-scatter in the last micro-batch's backward only
            policy.set_requires_gradient_sync(i == len(batches) - 1)
        with dist.autocast(env, cfg.train):
            loss, m = micro_loss(policy, mb, cfg)
        (loss * share).backward()
        names.append(list(m))
        on_device += [loss.detach().float()] + [torch.as_tensor(v, device=loss.device).detach().float() for v in m.values()]
    values = iter(torch.stack(on_device).tolist())
    total, finite, sums = 0.0, True, {}
    for mb, share, keys in zip(batches, shares, names):
        loss = next(values)
        finite &= math.isfinite(loss)
        total += loss * share
        for key in keys:
            sums[key] = sums.get(key, 0.0) + next(values) * mb.rows / n_rows
    return total, sums, not dist.any_rank(not finite, env)

