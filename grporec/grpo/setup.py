"""Setting a GRPO run up: the prompt dataset, the policy and reference models, the rewards."""
from __future__ import annotations

import torch

from grporec import dist
from grporec.config import Config
from grporec.data import datasets as D
from grporec.data.catalog import Catalog
from grporec.data.load import load_item_features, load_split, successor_hints, training_rows
from grporec.errors import SettingsError
from grporec.models.format import check_recorded_format
from grporec.models.lora import AdaptersOff, check_lora, lora_for
from grporec.models.placement import place
from grporec.models.policy import load_policy
from grporec.models.recompute import enable_activation_checkpointing
from grporec.models.tokenizer import check_sid_tokenizer
from grporec.rewards import RewardSet, SidEmbeddings, resolve_rewards, semantic_reward

RL_DATASETS = ("sid_history", "title2sid", "title_history")


def build_rl_dataset(cfg: Config, catalog: Catalog) -> D.MixedDataset:
    """The configured mix: SID history (the train rows; the held-back ones alone with data.hold_back),
    title/description -> SID (all items), title history -> SID (a seeded sample of data.seq_title_samples rows)."""
    parts = []
    unknown = [d for d in cfg.rl.datasets if d not in RL_DATASETS]
    if unknown or not cfg.rl.datasets:
        raise SettingsError(f"rl.datasets: unknown {unknown[0]!r}; choose from {list(RL_DATASETS)}" if unknown else "rl.datasets is empty")
    # the rows data.hold_back kept from SFT (all rows when it is 0)
    rows = training_rows(cfg.data, catalog, "rl") if {"sid_history", "title_history"} & set(cfg.rl.datasets) else None
    compact = cfg.data.prompt_text == "compact"
    hints = successor_hints(cfg.data, catalog, cfg.seed)
    if hints is not None and "title_history" in cfg.rl.datasets:
        raise SettingsError(f"rl.datasets: 'title_history' has no successor-hints prompt; with data.successor_hints="
                            f"{cfg.data.successor_hints} use sid_history and title2sid")
    if "sid_history" in cfg.rl.datasets:
        parts.append((D.SidDataset(rows, cfg.data.max_history, compact, hints, training=True), None))
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

    policy, tokenizer = place(read, env, cfg.train.mixed_precision, reshard_after_forward=cfg.train.reshard_after_forward,
                              prepare=lora_for(lora, catalog.sid_tokens))
    check_recorded_format(cfg.model.path, cfg.data.prompt_format)
    check_sid_tokenizer(tokenizer, catalog.sids, source=cfg.model.path)
    policy.config.use_cache = False
    if cfg.train.gradient_checkpointing:
        enable_activation_checkpointing(policy)
    reference = None
    if cfg.rl.beta != 0 and lora.rank > 0:
        reference = AdaptersOff(policy)  # the SFT model the adapters start from: no second model
    elif cfg.rl.beta != 0:
        dtype = reference_dtype(cfg, env)
        reference, _ = place(lambda: load_policy(cfg.model.path, dtype), env, cfg.train.mixed_precision,
                             reshard_after_forward=True)
        reference.requires_grad_(False).eval()
    return policy, reference, tokenizer


def reference_dtype(cfg: Config, env: dist.DistEnv) -> str:
    """rl.reference_dtype with auto resolved: bf16 where the reference computes in bf16 (CUDA, mixed precision)."""
    if cfg.rl.reference_dtype != "auto":
        return cfg.rl.reference_dtype
    return "bfloat16" if env.device.type == "cuda" and cfg.train.mixed_precision else "float32"


def load_teacher(cfg: Config, catalog: Catalog, device: torch.device):
    """The `teacher` reward's model (the training rows' counts smoothed with reward.sasrec_path's SASRec,
    `rewards.cf.CountsSasrecTeacher`), or None where the run does not reward with it (or lacks the SASRec,
    which `RewardSet` then names)."""
    names = {n for n, _ in resolve_rewards(cfg.reward.reward_type, cfg.reward.names, cfg.reward.weights)}
    if "teacher" not in names or not cfg.reward.sasrec_path:
        return None
    from grporec.models.sasrec import SASRec
    from grporec.rewards.cf import CountsSasrecTeacher, SasrecScorer

    scorer = SasrecScorer(SASRec.load(cfg.reward.sasrec_path, device), catalog)
    return CountsSasrecTeacher(scorer, load_split(cfg.data, "train", catalog), cfg.reward.teacher_a)


def teacher_items(teacher, k: int):
    """samples -> [B, k] the labels (catalog order) of the teacher's k most likely SIDs after each
    sample's history, -1 for a sample without a history (title prompts); for rl.add_teacher."""
    def top(samples: list[D.Sample]) -> torch.Tensor:
        out = torch.full((len(samples), k), -1, dtype=torch.long)
        rows = [b for b, s in enumerate(samples) if s.history_sids]
        if rows:
            probs = teacher.sid_probs([samples[b].history_sids for b in rows])  # [B', S]
            out[rows] = probs.topk(k, dim=1).indices
        return out
    return top


def build_rewards(cfg: Config, catalog: Catalog, device: torch.device, teacher=None) -> RewardSet:
    """The run's rewards. Those that need a resource (`rewards.BOUND_REWARDS`) are built here, the one
    place that loads it (the `teacher` reward's model may be given, from `load_teacher`), as plain
    functions of RewardInputs; a missing resource is named by RewardSet."""
    named = resolve_rewards(cfg.reward.reward_type, cfg.reward.names, cfg.reward.weights)
    names = {n for n, _ in named}
    bound = {}
    if "semantic" in names and cfg.reward.semantic_embeddings:
        embeddings = SidEmbeddings.load(cfg.reward.semantic_embeddings, catalog)
        bound["semantic"] = lambda x: semantic_reward(x, embeddings)
    if "sasrec" in names and cfg.reward.sasrec_path:
        from grporec.models.sasrec import SASRec
        from grporec.rewards.cf import SasrecScorer, sasrec_reward

        scorer = SasrecScorer(SASRec.load(cfg.reward.sasrec_path, device), catalog)
        bound["sasrec"] = lambda x: sasrec_reward(x, scorer)
    if "teacher" in names:
        from grporec.rewards.cf import teacher_reward

        counts_teacher = teacher or load_teacher(cfg, catalog, device)
        if counts_teacher is not None:
            bound["teacher"] = lambda x: teacher_reward(x, counts_teacher)
    if "markov" in names:
        from grporec.rewards.cf import MarkovTeacher, markov_reward

        markov = MarkovTeacher(load_split(cfg.data, "train", catalog), cfg.reward.markov_min_count)
        bound["markov"] = lambda x: markov_reward(x, markov)
    return RewardSet(named, bound)
