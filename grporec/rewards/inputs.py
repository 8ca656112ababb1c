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
    """

    completions: list[str | None]
    targets: list[str]
    group_size: int
    ranks: torch.Tensor
    histories: list[tuple[str, ...]] | None = None

    def __post_init__(self):
        B, G = len(self.targets), self.group_size
        if len(self.completions) != B * G or self.ranks.numel() != B * G:
            raise ValueError(f"{len(self.completions)} completions and {self.ranks.numel()} ranks for "
                             f"{B} targets x G={G}")
        if self.histories is not None and len(self.histories) != B:
            raise ValueError(f"{len(self.histories)} histories for {B} targets")

    def targets_per_row(self) -> list[str]:
        return [t for t in self.targets for _ in range(self.group_size)]
