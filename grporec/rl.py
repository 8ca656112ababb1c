"""The pieces the GRPO loop calls, one per stage, so that `loop.py` reads as the algorithm.

Setup (datasets, models with their pre-flight checks, rewards), rollout of a rank's prompts in
decode batches, per-token log-probs and the micro-batched loss + backward, the reference
model's exponential sync, and the rollout diversity metrics.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from grporec import dist
from grporec.config import Config
from grporec.data import datasets as D
from grporec.data.catalog import Catalog
from grporec.data.load import load_item_features, load_split
from grporec.decode import Rollout, beam_search, dynamic_sample, inject_targets, left_pad, sample
from grporec.errors import SettingsError
from grporec.logprobs import completion_logps
from grporec.loss import grpo_loss
from grporec.loss.advantage import pooled_std
from grporec.models.lora import AdaptersOff, check_lora, lora_for
from grporec.models.placement import place
from grporec.models.recompute import enable_activation_checkpointing
from grporec.models.policy import load_policy
from grporec.models.format import PromptFormat, check_recorded_format
from grporec.models.tokenizer import check_sid_tokenizer
from grporec.rewards import RewardSet, SidEmbeddings, resolve_rewards

RL_DATASETS = ("sid_history", "title2sid", "title_history")


# ------------------------------------------------------------------------------------ setup


def build_rl_dataset(cfg: Config, catalog: Catalog) -> D.MixedDataset:
    """The configured mix: SID history (all train rows), title/description -> SID (all items),
    title history -> SID (a seeded sample of data.seq_title_samples rows)."""
    parts = []
    unknown = [d for d in cfg.rl.datasets if d not in RL_DATASETS]
    if unknown or not cfg.rl.datasets:
        raise SettingsError(f"rl.datasets: unknown {unknown[0]!r}; choose from {list(RL_DATASETS)}" if unknown else "rl.datasets is empty")
    rows = load_split(cfg.data, "train", catalog) if {"sid_history", "title_history"} & set(cfg.rl.datasets) else None
    compact = cfg.data.prompt_text == "compact"
    if "sid_history" in cfg.rl.datasets:
        parts.append((D.SidDataset(rows, cfg.data.max_history, compact), None))
    if "title2sid" in cfg.rl.datasets:
        parts.append((D.Title2SidDataset(catalog, load_item_features(cfg.data), str(cfg.data.item_file), compact), None))
    if "title_history" in cfg.rl.datasets:
        parts.append((D.SeqTitle2SidDataset(rows, cfg.data.seq_title_samples, cfg.seed, cfg.data.max_history), None))
    return D.MixedDataset(parts, seed=cfg.seed)


def load_models(cfg: Config, catalog: Catalog, env: dist.DistEnv):
    """(policy, reference or None, tokenizer), checked and (under torchrun) sharded.

    Training keeps fp32 master weights; on CUDA the compute is bf16 (FSDP's mixed precision,
    or autocast in one process). The reference is never loaded when beta = 0.
    """
    lora = cfg.model.lora
    check_lora(lora, rl_reference_sync=cfg.rl.beta != 0 and cfg.rl.sync_ref_model)

    def read():
        return load_policy(cfg.model.path, "float32")

    policy, tokenizer = place(read, env, cfg.train.mixed_precision, prepare=lora_for(lora, catalog.sid_tokens))
    check_recorded_format(cfg.model.path, cfg.data.prompt_format)
    check_sid_tokenizer(tokenizer, catalog.sids, source=cfg.model.path)
    policy.config.use_cache = False
    if cfg.train.gradient_checkpointing:
        enable_activation_checkpointing(policy)
    reference = None
    if cfg.rl.beta != 0 and lora.rank > 0:
        reference = AdaptersOff(policy)  # the SFT model the adapters start from: no second model
    elif cfg.rl.beta != 0:
        reference, _ = place(read, env, cfg.train.mixed_precision, reshard_after_forward=True)
        reference.requires_grad_(False).eval()
    return policy, reference, tokenizer


def build_rewards(cfg: Config, catalog: Catalog, device: torch.device) -> RewardSet:
    named = resolve_rewards(cfg.reward.reward_type, cfg.reward.names, cfg.reward.weights)
    names = {n for n, _ in named}
    embeddings = SidEmbeddings.load(cfg.reward.semantic_embeddings, catalog) if "semantic" in names and cfg.reward.semantic_embeddings else None
    scorer = None
    if "sasrec" in names and cfg.reward.sasrec_path:
        from grporec.models.sasrec import SASRec
        from grporec.rewards.cf import SasrecScorer

        scorer = SasrecScorer(SASRec.load(cfg.reward.sasrec_path, device), catalog)
    teacher = None
    if "markov" in names:
        from grporec.rewards.cf import MarkovTeacher

        teacher = MarkovTeacher(load_split(cfg.data, "train", catalog), cfg.reward.markov_min_count)
    return RewardSet(named, embeddings, scorer, teacher)


def autocast(env: dist.DistEnv, cfg: Config):
    """bf16 autocast for one-process CUDA training (FSDP has its own mixed precision)."""
    if env.device.type == "cuda" and cfg.train.mixed_precision and not env.distributed:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------------- rollout


@dataclass
class Chunk:
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


def level_codes(chunks: list["Chunk"]) -> tuple[torch.Tensor, torch.Tensor]:
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
def generate(policy, fmt: PromptFormat, trie, samples: list[D.Sample], cfg: Config, label_of: dict[str, int],
             step: int, first_prompt: int, env: dist.DistEnv) -> list[Chunk]:
    """G completions per prompt, in decode batches of train.rollout_batch_prompts; `samples` are
    the global batch's prompts from index `first_prompt` on (this rank's share).

    With rl.add_gt, a group that misses its own target gets the target in place of its last
    (lowest-ranked) completion (`inject_targets`), so that every group holds a hit.
    """
    policy.eval()
    G, chunks = cfg.rl.num_generations, []
    for i in range(0, len(samples), cfg.train.rollout_batch_prompts):
        generator = None if cfg.rl.rollout == "beam" else rollout_generator(cfg.seed, step, first_prompt + i, env.device)
        part = samples[i:i + cfg.train.rollout_batch_prompts]
        ids, mask = left_pad([fmt.prompt_ids(s.prompt) for s in part], fmt.pad_id, env.device)
        targets = torch.tensor([label_of.get(s.target_sid, -1) for s in part], device=env.device)  # [B]
        with autocast(env, cfg):
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
        target_ids, target_mask = trie.path(targets.clamp(min=0))
        chunks.append(Chunk(part, r, targets, target_ids, target_mask * (targets >= 0).unsqueeze(1), trie.codes_of(targets)))
    policy.train()
    return chunks


def micro_batches(chunks: list[Chunk], prompts: int):
    """(chunk index, prompt slice) pieces of at most `prompts` prompts, within decode batches."""
    for c, chunk in enumerate(chunks):
        for b0 in range(0, chunk.rollout.num_prompts, prompts):
            yield c, slice(b0, min(b0 + prompts, chunk.rollout.num_prompts))


def piece(r: Rollout, s: slice):
    """Prompt rows s and their completion rows, with all-padding prompt columns dropped."""
    G = r.group_size
    pm = r.prompt_mask[s]
    first = int((pm.sum(0) > 0).nonzero()[0])  # left padding shared by every row of the piece
    rows = slice(s.start * G, s.stop * G)
    return r.prompt_ids[s, first:], pm[:, first:], r.completion_ids[rows], r.completion_mask[rows]


def loss_temperature(cfg: Config) -> float:
    """The temperature the loss's log-probs use: the sampling temperature, or 1 for beam search."""
    return cfg.rl.temperature if cfg.rl.rollout != "beam" else 1.0


@torch.no_grad()
def logps_of(model, chunks: list[Chunk], cfg: Config, env: dist.DistEnv) -> list[torch.Tensor]:
    """Per-token log-probs [rows, L] for every micro-batch piece, without grad (reference, old policy)."""
    out = []
    with autocast(env, cfg):
        for c, s in micro_batches(chunks, cfg.train.micro_batch_prompts):
            out.append(completion_logps(model, *piece(chunks[c].rollout, s), temperature=loss_temperature(cfg)))
    return out


# ------------------------------------------------------------------------------ policy update


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


def make_micro_batches(chunks: list[Chunk], advantages: torch.Tensor, ref_logps, old_logps, cfg: Config) -> list[MicroBatch]:
    """This rank's rows as MicroBatch records, in the order of `micro_batches` (and of ref/old log-probs)."""
    out, row0 = [], 0
    for k, (c, s) in enumerate(micro_batches(chunks, cfg.train.micro_batch_prompts)):
        ch = chunks[c]
        prompt_ids, prompt_mask, comp_ids, comp_mask = piece(ch.rollout, s)
        rows = slice(row0, row0 + comp_ids.shape[0])
        row0 += comp_ids.shape[0]
        G = ch.rollout.group_size
        out.append(MicroBatch(
            prompt_ids, prompt_mask, comp_ids, comp_mask, ch.samples[s], advantages[rows].to(comp_ids.device),
            None if ref_logps is None else ref_logps[k], None if old_logps is None else old_logps[k],
            ch.target_ids[s], ch.target_mask[s], ch.rollout.injected[s.start * G:s.stop * G], loss_temperature(cfg)))
    return out


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


def policy_backward(policy, batches: list[MicroBatch], cfg: Config, env: dist.DistEnv,
                    loss_fn=None) -> tuple[float, dict[str, float], bool]:
    """Loss over this rank's rows, accumulated over micro-batches, and its backward.

    Each micro-batch's loss is weighted by its share of the batch, so the summed gradient equals
    the full-batch gradient (and FSDP's average over ranks gives the global one): the share of
    sequences for grpo, dr_grpo and sequence; the share of tokens for token. Metrics are averaged
    with the share of rows, whatever keys `loss_fn` returns. Returns (this rank's loss, metrics,
    whether every micro-batch loss was finite on every rank). `loss_fn` defaults to `micro_loss`.
    """
    loss_fn = loss_fn or micro_loss
    n_rows = sum(mb.rows for mb in batches)
    n_tokens = sum(float(mb.completion_mask.sum()) for mb in batches)
    mean_tokens = dist.all_reduce_sum(n_tokens, env) / env.world_size  # token share is global
    total, finite, sums = 0.0, True, {}
    for mb in batches:
        with autocast(env, cfg):
            loss, m = loss_fn(policy, mb, cfg)
        share = (float(mb.completion_mask.sum()) / mean_tokens) if cfg.rl.loss_type == "token" else mb.rows / n_rows
        (loss * share).backward()
        finite &= bool(torch.isfinite(loss))
        total += loss.item() * share
        for key, value in m.items():
            sums[key] = sums.get(key, 0.0) + float(value) * mb.rows / n_rows
    return total, sums, not dist.any_rank(not finite, env)


def batch_reward_std(reward: torch.Tensor, env: dist.DistEnv) -> float:
    """The std of the whole global batch's rewards (rl.scale_rewards=batch), from the count, sum and
    sum of squares of every rank's part: N ranks divide by the same number as one process."""
    r = reward.double()
    return pooled_std(*dist.all_reduce_sums([r.numel(), float(r.sum()), float((r * r).sum())], env))


@torch.no_grad()
def sync_reference(reference, policy, alpha: float) -> None:
    """ref <- alpha * policy + (1 - alpha) * ref, parameter by parameter (shards line up under FSDP)."""
    for r, p in zip(reference.parameters(), policy.parameters()):
        r.lerp_(p.to(r.dtype), alpha)


# ---------------------------------------------------------------------------------- metrics


def rollout_metrics(chunks: list[Chunk]) -> dict[str, float]:
    """categorical_diversity: distinct completions per group / G; token_diversity: distinct token
    ids / valid completion tokens; completion_length: valid tokens per completion;
    frac_groups_without_hit: groups whose decoded completions all miss the target (before any
    injection); frac_injected: groups that got the target injected (rl.add_gt)."""
    groups, distinct, tokens, lengths, missed, injected = 0, 0.0, [], [], 0, 0
    for ch in chunks:
        r = ch.rollout
        G = r.group_size
        decoded_hit = ((r.labels == ch.targets.repeat_interleave(G)) & ~r.injected).view(-1, G).any(1)
        missed += int((~decoded_hit).sum())
        injected += int(r.injected.view(-1, G).any(1).sum())
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
    }
