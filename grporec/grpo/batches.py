"""A step's rows as micro-batch records: what a micro-batch's loss sees, with the reference's and
the old policy's log-probs of the same rows inside the record they belong to."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from grporec import dist
from grporec.config import Config
from grporec.data import datasets as D
from grporec.decode import Rollout
from grporec.grpo.rollout import DecodeBatch
from grporec.logprobs import completion_logps


def loss_temperature(cfg: Config) -> float:
    """The temperature the loss's log-probs use: the sampling temperature, or 1 for beam search."""
    return cfg.rl.temperature if cfg.rl.rollout != "beam" else 1.0


def prompt_slices(chunks: list[DecodeBatch], prompts: int):
    """(decode batch, prompt slice) pieces of at most `prompts` prompts, within decode batches."""
    for chunk in chunks:
        for b0 in range(0, chunk.rollout.num_prompts, prompts):
            yield chunk, slice(b0, min(b0 + prompts, chunk.rollout.num_prompts))


def slice_rows(r: Rollout, s: slice):
    """Prompt rows s and their completion rows, with all-padding prompt columns dropped."""
    G = r.group_size
    pm = r.prompt_mask[s]
    first = int((pm.sum(0) > 0).nonzero()[0])  # left padding shared by every row of the piece
    rows = slice(s.start * G, s.stop * G)
    return r.prompt_ids[s, first:], pm[:, first:], r.completion_ids[rows], r.completion_mask[rows]


@dataclass
class MicroBatch:
    """Everything the loss of one micro-batch may use (b prompts of one decode batch, b*G rows).

    prompt_ids, prompt_mask: [b, T] (left padding shared by all rows dropped).
    completion_ids, completion_mask: [b*G, L].
    samples: the b prompts' samples (targets, histories, task).
    advantages: [b*G], or [b*G, L] per token.
    ref_logps, old_logps: [b*G, L] or None (no reference when beta = 0; old only for several updates).
    target_ids, target_mask: [b, L] each prompt's own target completion (from the trie; mask all 0
        when the target is not in the catalog), for losses that use the ground truth.
    injected: [b*G] bool, rows written by ground-truth injection.
    temperature: the temperature of the log-probs (the sampling one, 1 for beams).
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    samples: list[D.Sample]
    advantages: torch.Tensor
    ref_logps: torch.Tensor | None
    old_logps: torch.Tensor | None
    target_ids: torch.Tensor
    target_mask: torch.Tensor
    injected: torch.Tensor
    temperature: float

    @property
    def rows(self) -> int:
        return self.completion_ids.shape[0]


def make_micro_batches(chunks: list[DecodeBatch], advantages: torch.Tensor, cfg: Config, micro: int) -> list[MicroBatch]:
    """This rank's rows as MicroBatch records of `micro` prompts each (train.micro_batch_prompts, or the
    size `grpo.fit.MicroBatchFit` found; within decode batches); their reference and old-policy log-probs
    are filled in by `add_logps`."""
    out, row0 = [], 0
    for ch, s in prompt_slices(chunks, micro):
        prompt_ids, prompt_mask, comp_ids, comp_mask = slice_rows(ch.rollout, s)
        rows = slice(row0, row0 + comp_ids.shape[0])
        row0 += comp_ids.shape[0]
        G = ch.rollout.group_size
        out.append(MicroBatch(
            prompt_ids, prompt_mask, comp_ids, comp_mask, ch.samples[s], advantages[rows].to(comp_ids.device),
            None, None,  # ref_logps, old_logps: add_logps fills them
            ch.target_ids[s], ch.target_mask[s], ch.rollout.injected[s.start * G:s.stop * G], loss_temperature(cfg)))
    return out


def _no_grad_groups(batches: list[MicroBatch], prompts: int):
    """Consecutive micro-batches of at most `prompts` prompts together (a lone larger one alone)."""
    group, size = [], 0
    for mb in batches:
        b = mb.prompt_ids.shape[0]
        if group and size + b > prompts:
            yield group
            group, size = [], 0
        group.append(mb)
        size += b
    if group:
        yield group


def _stack(tensors: list[torch.Tensor], width: int, left: bool) -> torch.Tensor:
    """[b_i, w_i] tensors as one [sum b_i, width], zero-padded on the left (prompts) or right (completions)."""
    pad = [torch.nn.functional.pad(t, (width - t.shape[1], 0) if left else (0, width - t.shape[1])) for t in tensors]
    return torch.cat(pad)


@torch.no_grad()
def add_logps(batches: list[MicroBatch], model, field: str, cfg: Config, env: dist.DistEnv, micro: int) -> None:
    """Fill each micro-batch's `field` ("ref_logps" or "old_logps") with `model`'s per-token
    log-probs [rows, L], without grad. Several micro-batches share one forward (train.logps_batch_prompts
    prompts, by default `micro`, the update's micro-batch): their prompts are left-padded to a common
    width (masked, and positions follow the mask, so the values are the per-micro-batch ones) and their
    completions right-padded."""
    prompts = cfg.train.logps_batch_prompts or micro
    with dist.autocast(env, cfg.train):
        for group in _no_grad_groups(batches, prompts):
            T = max(mb.prompt_ids.shape[1] for mb in group)
            L = max(mb.completion_ids.shape[1] for mb in group)
            logps = completion_logps(model, _stack([mb.prompt_ids for mb in group], T, left=True),
                                     _stack([mb.prompt_mask for mb in group], T, left=True),
                                     _stack([mb.completion_ids for mb in group], L, left=False),
                                     _stack([mb.completion_mask for mb in group], L, left=False),
                                     temperature=group[0].temperature)
            row = 0
            for mb in group:
                setattr(mb, field, logps[row:row + mb.rows, :mb.completion_ids.shape[1]])
                row += mb.rows
