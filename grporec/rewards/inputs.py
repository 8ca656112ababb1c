"""`RewardInputs`: what every reward function sees about one rollout, as plain values."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RewardInputs:
    """One rollout's completions and the facts rewards may use.

    completions: [B*G] SID strings (None for an invalid beam), group by group.
    targets: [B] each prompt's target SID.
    group_size: G.
    ranks: [B*G] position of each completion within its group (beam rank for beam search).
    histories: [B] each prompt's SID history, oldest first (empty for item-level tasks).
    level_codes: [B*G, K] each completion's SID level codes (-1 for an invalid completion and
        after a shorter SID's last level), from the catalog; None when built from strings only.
    target_codes: [B, K] each target's codes (-1 for a target outside the catalog); given with
        level_codes.
    """

    completions: list[str | None]
    targets: list[str]
    group_size: int
    ranks: torch.Tensor
    histories: list[tuple[str, ...]] | None = None
    level_codes: torch.Tensor | None = None
    target_codes: torch.Tensor | None = None

    def __post_init__(self):
        B, G = len(self.targets), self.group_size
        if len(self.completions) != B * G or self.ranks.numel() != B * G:
            raise ValueError(f"{len(self.completions)} completions and {self.ranks.numel()} ranks for "
                             f"{B} targets x G={G}")
        if self.histories is not None and len(self.histories) != B:
            raise ValueError(f"{len(self.histories)} histories for {B} targets")
        if (self.level_codes is None) != (self.target_codes is None):
            raise ValueError("level_codes and target_codes come together")
        if self.level_codes is not None and (self.level_codes.dim() != 2 or self.level_codes.shape[0] != B * G
                                             or self.target_codes.shape != (B, self.level_codes.shape[1])):
            raise ValueError(f"level_codes {tuple(self.level_codes.shape)} and target_codes {tuple(self.target_codes.shape)} "
                             f"must be [B*G, K] and [B, K] for B={B}, G={G}")

    def targets_per_row(self) -> list[str]:
        return [t for t in self.targets for _ in range(self.group_size)]
