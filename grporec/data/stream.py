"""A deterministic, resumable stream of samples: shuffled per epoch, always full batches.

Every rank builds the same stream from the same seed and takes its own slice of each global
batch, so ranks never need to exchange data. The position (epoch, cursor) is saved in
checkpoints, so a resumed run sees exactly the prompts the uninterrupted run would have.
"""
from __future__ import annotations

import torch

from grporec.data.datasets import PromptDataset, Sample
from grporec.errors import SettingsError


class SampleStream:
    def __init__(self, dataset: PromptDataset, seed: int):
        if len(dataset) == 0:
            raise SettingsError("the training dataset is empty")
        self.dataset, self.seed = dataset, seed
        self.epoch, self.cursor = 0, 0
        self._order = self._shuffle(0)

    def _shuffle(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.dataset), generator=g).tolist()

    def take(self, n: int) -> list[Sample]:
        """The next n samples, continuing into the next epoch's order when this one runs out."""
        out = []
        while len(out) < n:
            if self.cursor == len(self._order):
                self.epoch, self.cursor = self.epoch + 1, 0
                self._order = self._shuffle(self.epoch)
            k = min(n - len(out), len(self._order) - self.cursor)
            out += [self.dataset[i] for i in self._order[self.cursor:self.cursor + k]]
            self.cursor += k
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "seed": self.seed, "size": len(self.dataset)}

    def load_state_dict(self, state: dict) -> None:
        if state["size"] != len(self.dataset) or state["seed"] != self.seed:
            raise SettingsError(f"checkpoint data position is for {state['size']} samples with seed {state['seed']}, "
                             f"but this run has {len(self.dataset)} samples with seed {self.seed}")
        self.epoch, self.cursor = state["epoch"], state["cursor"]
        self._order = self._shuffle(self.epoch)
