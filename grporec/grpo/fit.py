"""train.micro_batch_prompts=0: micro-batches as large as the device's memory allows.

On a GPU the policy phase's time follows the number of forward + backward passes (their
dispatched operations), not their size (docs/gpu.md: 4 micro-batches of 16 prompts took 3.9x as
long as one of 64 on an H200), so the largest micro-batch that fits is the fastest. `MicroBatchFit`
starts at the decode batch (train.rollout_batch_prompts: micro-batches never span two) and, when
a step's reference or policy pass runs out of device memory, halves the size, drops the step's
partial gradients and redoes that pass; the size it settles on holds for the rest of the run (a
later, longer batch can halve it again)."""
from __future__ import annotations

import gc
from typing import Callable, TypeVar

import torch

from grporec.config import TrainConfig
from grporec.errors import SettingsError

T = TypeVar("T")


def check_auto_micro(tc: TrainConfig, world_size: int) -> None:
    """Auto sizing retries a pass after an out-of-memory error, which only one process can do: on N ranks, the
    ranks that did not run out would wait in FSDP's collectives for the one that did."""
    if tc.micro_batch_prompts == 0 and world_size > 1:
        raise SettingsError(f"train.micro_batch_prompts=0 (the largest micro-batch that fits) needs one process; "
                            f"with {world_size} ranks set a number of prompts (the largest that fitted alone is a good one)")


class MicroBatchFit:
    """The prompts per micro-batch: train.micro_batch_prompts, or (0) the largest that has fitted so far."""

    def __init__(self, tc: TrainConfig, on_change: Callable[[str], None] = lambda _: None):
        self.auto = tc.micro_batch_prompts == 0
        self.size = tc.rollout_batch_prompts if self.auto else tc.micro_batch_prompts
        self.on_change = on_change

    def run(self, attempt: Callable[[int], T], model: torch.nn.Module) -> T:
        """attempt(size), redone at half the size after an out-of-memory error (auto sizing only), with `model`'s
        partial gradients dropped first. An error at one prompt a micro-batch is the user's to see."""
        while True:
            try:
                return attempt(self.size)
            except torch.OutOfMemoryError as e:
                if not self.auto or self.size == 1:
                    raise
                message = str(e).splitlines()[0]
            # Outside the except block: the exception's traceback holds the failed pass's activations.
            model.zero_grad(set_to_none=True)
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.on_change(f"out of memory at {self.size} prompts a micro-batch ({message}); redoing the step's "
                           f"passes at {self.size // 2}")
            self.size //= 2
