"""The rollout stage: G completions per prompt from the policy, decode batch by decode batch, over
the SID trie (`grporec.decode`), and what they say about the group (diversity, hits)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from grporec import dist
from grporec.config import Config
from grporec.data import datasets as D
from grporec.decode import Rollout, beam_search, dynamic_sample, inject_labels, inject_targets, left_pad, sample
from grporec.errors import SettingsError
from grporec.models.format import PromptFormat


@dataclass
class DecodeBatch:
    """One decode batch: its samples, their rollout, and each prompt's target label [B] (-1 if
    the target is not in the trie)."""

    samples: list[D.Sample]
    rollout: Rollout
    targets: torch.Tensor
    target_ids: torch.Tensor  # [B, L] each prompt's target completion from the trie
    target_mask: torch.Tensor  # [B, L] (all 0 where the target is not in the trie)
    target_codes: torch.Tensor  # [B, K] the target's SID level codes (all -1 where it is not in the trie)


def check_one_sid_length(codes: torch.Tensor) -> None:
    """rl.advantage=sibling maps SID level k to completion token k: every SID needs the same levels.

    Args:
        codes: [N, K] the catalog's level codes (the trie's), -1 after a shorter SID's last level.
    """
    lengths = (codes >= 0).sum(1).unique().tolist()
    if len(lengths) != 1:
        raise SettingsError(f"rl.advantage=sibling needs SIDs of one length; the catalog has lengths {sorted(lengths)}")


def level_codes(chunks: list["DecodeBatch"]) -> tuple[torch.Tensor, torch.Tensor]:
    """(completions' SID level codes [rows, K], targets' [prompts, K]) of a step, on the CPU."""
    return (torch.cat([ch.rollout.level_codes.cpu() for ch in chunks]),
            torch.cat([ch.target_codes.cpu() for ch in chunks]))


def rollout_generator(seed: int, step: int, first_prompt: int, device: torch.device) -> torch.Generator:
    """The random stream of the decode batch that starts at prompt `first_prompt` of step `step`'s
    global batch. A function of that position only: 2 ranks draw what 1 process draws (when
    train.rollout_batch_prompts divides each rank's prompts, so the decode batches line up), and a
    resumed run draws what the uninterrupted one would have, with no generator state to save."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + step) * 1_000_033 + first_prompt)


@torch.no_grad()
def roll_out(policy, fmt: PromptFormat, trie, samples: list[D.Sample], cfg: Config, label_of: dict[str, int],
             step: int, first_prompt: int, env: dist.DistEnv, teacher_top=None) -> list[DecodeBatch]:
    """G completions per prompt, in decode batches of train.rollout_batch_prompts; `samples` are
    the global batch's prompts from index `first_prompt` on (this rank's share).

    With rl.add_gt, a group that misses its own target gets the target in place of its last
    (lowest-ranked) completion (`inject_targets`), so that every group holds a hit. With
    rl.add_teacher, `teacher_top` (samples -> [B, k] labels, `grpo.setup.teacher_items`) names the
    items each group gets next, above that and never in place of a hit (`inject_labels`).
    """
    policy.eval()
    G, chunks = cfg.rl.num_generations, []
    for i in range(0, len(samples), cfg.train.rollout_batch_prompts):
        generator = None if cfg.rl.rollout == "beam" else rollout_generator(cfg.seed, step, first_prompt + i, env.device)
        part = samples[i:i + cfg.train.rollout_batch_prompts]
        ids, mask = left_pad([fmt.prompt_ids(s.prompt) for s in part], fmt.pad_id, env.device)
        targets = torch.tensor([label_of.get(s.target_sid, -1) for s in part], device=env.device)  # [B]
        with dist.autocast(env, cfg.train):
            if cfg.rl.rollout == "beam":
                r = beam_search(policy, ids, mask, trie, G)
            elif cfg.rl.rollout == "beam_sample":
                r = beam_search(policy, ids, mask, trie, G, generator=generator, temperature=cfg.rl.temperature)
            elif cfg.rl.rollout == "sample":
                r = sample(policy, ids, mask, trie, G, cfg.rl.temperature, generator)
            elif cfg.rl.rollout == "dynamic":
                r = dynamic_sample(policy, ids, mask, trie, G, targets, cfg.rl.temperature, generator)
            else:
                raise SettingsError(f"rl.rollout must be beam, beam_sample, sample or dynamic, got {cfg.rl.rollout!r}")
        if cfg.rl.add_gt:
            r = inject_targets(r, targets, trie)
        if teacher_top is not None:
            r = inject_labels(r, teacher_top(part).to(env.device), trie, keep=targets)  # never over a hit
        target_ids, target_mask = trie.path(targets.clamp(min=0))
        chunks.append(DecodeBatch(part, r, targets, target_ids, target_mask * (targets >= 0).unsqueeze(1), trie.codes_of(targets)))
    policy.train()
    return chunks


def rollout_metrics(chunks: list[DecodeBatch]) -> dict[str, float]:
    """categorical_diversity: distinct completions per group / G; token_diversity: distinct token
    ids / valid completion tokens; completion_length: valid tokens per completion;
    frac_groups_without_hit: groups whose decoded completions all miss the target (before any
    injection); frac_injected: groups that got the target injected (rl.add_gt); other_injected: other
    injected rows (rl.add_teacher's items) per group."""
    groups, distinct, tokens, lengths, missed, injected, others = 0, 0.0, [], [], 0, 0, 0
    for ch in chunks:
        r = ch.rollout
        G = r.group_size
        is_target = r.labels == ch.targets.repeat_interleave(G)
        decoded_hit = (is_target & ~r.injected).view(-1, G).any(1)
        missed += int((~decoded_hit).sum())
        injected += int((r.injected & is_target).view(-1, G).any(1).sum())
        others += int((r.injected & ~is_target).sum())
        for b in range(r.num_prompts):
            names = [x for x in r.sids[b * G:(b + 1) * G] if x is not None]
            distinct += len(set(names)) / G
            groups += 1
        valid = r.completion_mask.bool()
        tokens.append(r.completion_ids[valid])
        lengths.append(r.completion_mask.sum(1).float())
    all_tokens = torch.cat(tokens)
    return {
        "categorical_diversity": distinct / max(groups, 1),
        "token_diversity": all_tokens.unique().numel() / max(all_tokens.numel(), 1),
        "completion_length": torch.cat(lengths).mean().item(),
        "frac_groups_without_hit": missed / max(groups, 1),
        "frac_injected": injected / max(groups, 1),
        "other_injected": others / max(groups, 1),
    }
