"""Step 6 of the loop: the reference model follows the policy (TR-DPO style soft update,
rl.sync_ref_model), every rl.ref_sync_steps steps."""
from __future__ import annotations

import torch


@torch.no_grad()
def sync_reference(reference, policy, alpha: float) -> None:
    """ref <- alpha * policy + (1 - alpha) * ref, parameter by parameter (shards line up under FSDP)."""
    for r, p in zip(reference.parameters(), policy.parameters()):
        r.lerp_(p.to(r.dtype), alpha)


def due(step: int, sync: bool, every: int) -> bool:
    """Whether the reference is synced after `step` (1-based): every `every` steps when `sync`."""
    return sync and step % every == 0
