"""Typed configuration: the tree of dataclasses that describes every run of grporec.

One `Config` per run: read from a YAML file, patched by `section.key=value` command-line
overrides, type-checked field by field (an unknown key, a wrong type or a missing required key is
a `ConfigError` naming the key and the file; the machinery is `grporec.typed_yaml`), and dumped
back to YAML so that each run and checkpoint carries the exact configuration that produced it.
Loading a dump gives an equal `Config`. Each field's comment is its documentation
(`python -m grporec.config_doc` turns them into docs/configuration.md).

Relative paths in the config are relative to the working directory, as in MiniOneRec's scripts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from grporec.config_checks import VALUE_RANGES, check_values
from grporec.metrics import DEFAULT_KS
from grporec.typed_yaml import ConfigError, dump_config, from_dict, load_typed, save_config

__all__ = ["Config", "ConfigError", "load_config", "dump_config", "save_config", "from_dict", "check_values", "VALUE_RANGES"]  # and the sections


@dataclass
class DataConfig:
    """Where MiniOneRec-format data lives (paths as upstream: data/Amazon/<split>/<file>)."""

    info_file: str  # `sid<TAB>title<TAB>item_id`, one item a line; defines the catalog
    train_file: str | None = None  # CSV of interactions used for training
    valid_file: str | None = None  # CSV used for evaluation during training
    test_file: str | None = None  # CSV used by the final evaluation
    index_file: str | None = None  # <Category>.index.json: item id -> SID tokens
    item_file: str | None = None  # <Category>.item.json: item id -> title, description, ...
    seq_title_samples: int = 10000  # rows sampled for the title-history -> SID task
    max_history: int = 10  # upstream keeps at most the last 10 items
    # Prompts longer than this keep their last tokens (the end holds the question and the latest items); one rule
    # for SFT, rollouts, log-probs and evaluation, so a long history is seen the same way in each.
    max_prompt_tokens: int = 1024
    # How prompts and completions become tokens (grporec/models/format.py): "alpaca", MiniOneRec's raw text
    # (with the tokenizer's own BOS, if it adds one); "chat", the tokenizer's chat template (an Instruct model's).
    # Recorded in every checkpoint; a model trained with one format refuses the other.
    prompt_format: Literal["alpaca", "chat"] = "alpaca"
    # The prompts' words: "minionerec", MiniOneRec's templates character for character (each stage its own
    # wording; the default, and what pretrained LMs should keep); "compact", one short prompt for every stage
    # (the history's SIDs back to back, or "title: ..."), for from-scratch models whose cost is per prompt token.
    prompt_text: Literal["minionerec", "compact"] = "minionerec"
    synthetic_preset: str | None = None  # demo only: generate this embedded dataset if absent
    synthetic_root: str | None = None  # where the synthetic dataset's files go
    synthetic_seed: int = 0  # seed of the synthetic dataset generator
    # A valid CSV to derive train_file and valid_file from when they are absent (for datasets without a
    # public train split, e.g. Office_Products): each user's latest row becomes valid_file, every
    # earlier transition a training row (python -m grporec.data.derive --holdout).
    derive_from: str | None = None
    # Each user's N latest training rows (longest history) are held back from every SFT stage and are the GRPO
    # stage's only history prompts, so GRPO learns from transitions its SFT start never trained on (issue 34).
    # The counts behind the Markov/teacher rewards and the seen/unseen buckets still use every training row.
    # 0: SFT and GRPO both use every training row.
    hold_back: int = 0
    # Successor hints (grporec/data/hints.py): every SID-history prompt (SFT, GRPO, evaluation, recommend) gets a line
    # with the K items that most often followed its last item in the training rows, so the model reads the counts a
    # Markov chain uses instead of memorising them (issue 34). A training row's own transition is counted once less.
    # Needs prompt_text: compact. 0: no hints.
    successor_hints: int = 0
    # The seeded share of training rows (with their suffixes) whose own transition is left out of their hints
    # altogether, so that training, like evaluation, often has the answer outside the hints. 0: leave one out only.
    hint_drop: float = 0.0
    # Each hint followed by its count, and the line by the last item's total count ("<sid> 6 <sid> 3 / 14"), so the
    # model can weigh a hint as the blend weighs the counts. Needs successor_hints.
    hint_counts: bool = False


@dataclass
class TinyModelConfig:
    """Shape of the from-scratch Qwen2-architecture model used by tests and the demo."""

    hidden_size: int = 128  # width of the residual stream
    num_layers: int = 2  # transformer blocks
    num_heads: int = 4  # attention heads
    num_kv_heads: int = 2  # key/value heads (grouped-query attention)
    intermediate_size: int = 256  # MLP width
    max_position_embeddings: int = 512  # longest prompt + completion in tokens
    tokenizer_vocab_size: int = 1000  # BPE vocabulary learnt from the data, before SID tokens


@dataclass
class LoraConfig:
    """LoRA: train low-rank adapters and the SID token rows instead of the whole model (SFT and GRPO)."""

    rank: int = 0  # adapter rank r (0: no LoRA, every parameter trains)
    alpha: float = 16.0  # the update is scaled by alpha / rank
    dropout: float = 0.0  # dropout on the adapters' input during training
    # Linear layers of the decoder layers that get adapters, by attribute name (q_proj, v_proj, ...), or
    # ["all-linear"]: every one of them (the output head is never adapted: its SID rows train instead)
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    # Train the SID tokens' rows of the input embedding and output head (the rest of the vocabulary stays
    # frozen). SFT needs them (a pretrained model's SID rows are new); GRPO from an SFT model can keep them.
    sid_rows: bool = True


@dataclass
class ModelConfig:
    """The policy: an HF causal LM in a local directory, or a tiny one built from scratch."""

    path: str  # local HF directory (safetensors + config + tokenizer); never a hub name
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # weights for evaluation (training keeps fp32 masters)
    # When SFT adds SID tokens to a pretrained model, its vocabulary rows are padded up to a multiple of this
    # (GPU matmuls prefer it); padded rows are never generated (not in the SID trie; suppressed for HF generate). 1: none.
    pad_vocab_to_multiple_of: int = 64
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class SasrecConfig:
    """The SASRec baseline / collaborative-filtering reward model and its training."""

    path: str | None = None  # saved model directory; default <output_dir>/sasrec
    hidden: int = 64  # item embedding width
    blocks: int = 2  # self-attention blocks
    heads: int = 1  # attention heads per block
    dropout: float = 0.2  # dropout on embeddings and blocks during training
    max_len: int = 10  # history items seen (the last ones)
    lr: float = 1e-3  # learning rate
    weight_decay: float = 0.0  # weight decay
    batch_size: int = 256  # training sequences per step
    epochs: int = 100  # upper bound; early stopping on valid NDCG@10 usually ends sooner
    patience: int = 5  # epochs without a better valid NDCG@10 before stopping


@dataclass
class RewardConfig:
    """Which rewards score a completion, and their weights."""

    # MiniOneRec names: rule, ranking (= rule + ndcg_rule), ranking_only (= ndcg_rule), semantic, sasrec;
    # grporec's: prefix (partial credit per shared leading SID level), ranking_prefix (= ranking + prefix).
    # Checked against grporec.rewards.REWARD_TYPES when a run starts.
    reward_type: str = "ranking"
    # An explicit list of reward functions overrides reward_type: rule, ndcg_rule, prefix, semantic, sasrec, markov,
    # teacher
    # (grporec.rewards.REWARDS), or your own as package.module:function (a function of RewardInputs).
    names: list[str] | None = None
    weights: list[float] | None = None  # one per name (default all 1.0)
    semantic_embeddings: str | None = None  # .npy [N_items, D], rows in catalog item order
    sasrec_path: str | None = None  # trained SASRec directory for the sasrec reward
    # markov reward: P(completion | last history item) counted on the training split, 0 where the last item was
    # followed fewer than this many times in training (a teacher too unsure to teach)
    markov_min_count: int = 1
    # teacher reward: (count(last -> sid) + a p_SASRec(sid | history)) / (count(last) + a), the Markov counts smoothed
    # with SASRec (reward.sasrec_path); a is this, in counts (bench/experiments/teacher_a.py scores it on valid)
    teacher_a: float = 10.0


@dataclass
class BlendConfig:
    """A recipe's blend stage (kind: blend): the grids its (a, w) are chosen from on valid NDCG@10."""

    # the prior strength a, in counts: tiny puts the last item's successors first by count, huge is the model's order
    a_grid: list[float] = field(default_factory=lambda: [1e-3, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 1e6])
    # SASRec's weight w in the prior (only with the recipe's SASRec: reward.sasrec_path, set by its sasrec stage)
    w_grid: list[float] = field(default_factory=lambda: [0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])


@dataclass
class RLConfig:
    """GRPO: rollout, advantages, loss and the reference model (MiniOneRec's recipe by default)."""

    # prompt sources: sid_history (next SID from the SID history), title2sid (item title/description -> its SID),
    # title_history (next SID from the history as titles; data.seq_title_samples rows)
    datasets: list[str] = field(default_factory=lambda: ["sid_history", "title2sid", "title_history"])
    num_generations: int = 16  # G completions per prompt
    # constrained beam search, stochastic beam search (HF's beam sampling, at rl.temperature), sampling, dynamic sampling
    rollout: Literal["beam", "beam_sample", "sample", "dynamic"] = "beam"
    # Ground-truth injection: a group whose G completions miss the prompt's own target gets the target in
    # place of its lowest-ranked completion, so every group has a hit (an off-policy row; see docs/results.md).
    add_gt: bool = False
    # Teacher injection: each group also gets the `teacher` reward's add_teacher most likely items for its
    # history (those it lacks), in place of its lowest-ranked decoded completions, never over the target's
    # row: what the classical models favour, which the policy's own samples rarely reach. Needs teacher in
    # reward.names, and add_teacher + add_gt < num_generations.
    add_teacher: int = 0
    temperature: float = 1.0  # sampling temperature (also divides the logits of the loss's log-probs when sampling)
    beta: float = 1e-3  # KL coefficient; 0 disables the reference model entirely
    # Weights of the frozen reference. auto: bfloat16 on CUDA with train.mixed_precision (its forward
    # computes in bf16 anyway, so fp32 storage only doubles its memory), else float32. Syncs (ref <- alpha
    # policy + (1 - alpha) ref) then round to bf16.
    reference_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # k3: exp(ref - logp) - (ref - logp) - 1 per token; k3+: k3's value with k2's gradient (loss/grpo.py)
    kl_estimator: Literal["k3", "k3+"] = "k3"
    # grpo: mean over each sequence's tokens, then over sequences; token: mean over all tokens of the batch;
    # dr_grpo: sum over tokens / (sequences x L); sequence: one ratio per sequence (GSPO-style)
    loss_type: Literal["grpo", "token", "dr_grpo", "sequence"] = "grpo"
    # A = (r - group mean) / (std + 1e-4), with the std of each group or of the batch; none: no division (Dr. GRPO)
    scale_rewards: Literal["group", "batch", "none"] = "group"
    # "group": GRPO's one advantage per completion; "sibling": per-token prefix-tree advantages (each SID
    # level's token against the group members that share the earlier levels; see loss/advantage.py).
    advantage: Literal["group", "sibling"] = "group"
    # > 0: add nll_coef x the NLL (mean per token) of each prompt's ground-truth completion, computed in the
    # same prompt-shared forward as the G completions (one extra row per prompt): GRPO + NLL anchor.
    nll_coef: float = 0.0
    num_iterations: int = 1  # policy updates per rollout (> 1 uses the PPO clip)
    epsilon_low: float = 0.2  # PPO clip below: ratio >= 1 - epsilon_low (num_iterations > 1)
    epsilon_high: float = 0.2  # PPO clip above: ratio <= 1 + epsilon_high
    sync_ref_model: bool = True  # ref <- alpha * policy + (1 - alpha) * ref every ref_sync_steps
    ref_sync_steps: int = 512  # steps between reference syncs
    ref_sync_alpha: float = 0.6  # weight of the policy in a reference sync


@dataclass
class TrainConfig:
    """Optimisation, schedule, logging and checkpoints (shared by GRPO and SFT)."""

    lr: float = 1e-5  # peak AdamW learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW betas
    warmup_ratio: float = 0.03  # of all optimizer steps, then cosine decay to 0
    # Optimizer steps the warmup + cosine spans (0: the run's own, max_steps or epochs at its start). A resumed
    # run keeps its checkpoint's horizon, so raising max_steps does not make the rate jump; set this to stretch it.
    schedule_steps: int = 0
    max_grad_norm: float = 0.3  # gradient clipping (global L2 norm)
    prompts_per_step: int = 64  # global batch: prompts per optimizer step, over all ranks
    # prompts per forward/backward on one rank (x G rows for GRPO). GRPO only: 0 = the largest that fits, from
    # rollout_batch_prompts down, halved after an out-of-memory error (one process; grporec/grpo/fit.py)
    micro_batch_prompts: int = 4
    rollout_batch_prompts: int = 16  # prompts decoded together on one rank
    # prompts per no-grad log-prob forward (reference, old policy): they keep no activations, so on a GPU
    # they can run wider than micro_batch_prompts (rollout_batch_prompts is what decoding already holds).
    # 0: micro_batch_prompts, the same forwards as the update's (so N ranks pad exactly as one process)
    logps_batch_prompts: int = 0
    # FSDP2 (torchrun) trade-offs of memory for communication, both off by default (least memory):
    # reshard_after_forward=false keeps each layer's gathered weights from a micro-batch's first forward
    # through its backward (one all-gather per layer per micro-batch instead of three: the prompt pass, the
    # completion pass and the backward), at the cost of the whole model's bf16 weights on every rank;
    reshard_after_forward: bool = True
    # reduce_every_micro_batch=false accumulates unsharded gradients over the micro-batches and
    # reduce-scatters once per optimizer step, at the cost of a full fp32 gradient on every rank.
    reduce_every_micro_batch: bool = True
    epochs: int = 2  # passes over the prompts (unless max_steps > 0)
    max_steps: int = -1  # > 0: stop after this many optimizer steps instead of the epochs
    log_steps: int = 1  # a console line every N steps (the JSONL log gets every step)
    eval_steps: int = 0  # evaluate on the valid split every N steps (0: never during training)
    save_steps: int = 0  # checkpoint every N steps (0: only at the end and on SIGTERM/SIGINT)
    save_total_limit: int = 2  # checkpoints kept (the newest ones)
    # A fresh start in a used output_dir moves the earlier run's checkpoints to superseded-<time>/ and keeps them;
    # true deletes every such set there when this run starts (the log says how many and how much).
    drop_superseded: bool = False
    resume: str = "auto"  # "auto" (latest checkpoint in output_dir, if any), "none", or a checkpoint directory
    max_bad_steps: int = 5  # consecutive non-finite steps before the run stops
    stop_after: int = 0  # checkpoint and exit after this many steps of this session (0: run to the end); for time-limited jobs
    mixed_precision: bool = True  # CUDA: bf16 compute, fp32 master weights and reductions
    # The same bf16 autocast on the CPU (one process): ~2x faster training of the tiny model on a CPU with AVX512-BF16
    # or AMX (bench/cpu_bf16.py), rounding as a GPU run does; off by default, where CPU results stay exact fp32.
    cpu_mixed_precision: bool = False
    # Recompute each decoder layer's activations in the backward instead of keeping them: the policy
    # update's activation memory drops to about one layer's, for about one more forward of compute.
    gradient_checkpointing: bool = False
    progress: bool = True  # tqdm progress bar (shown only on a terminal)
    # Where step metrics go: metrics.jsonl always (the source of truth); "tensorboard" adds a SummaryWriter
    # under <output_dir>/tensorboard (pip install tensorboard), so `tensorboard --logdir runs/` works;
    # "wandb" a Weights & Biases run with the config (pip install wandb; WANDB_PROJECT, WANDB_MODE=offline).
    report_to: list[str] = field(default_factory=lambda: ["jsonl"])


@dataclass
class EvalConfig:
    """Evaluation by constrained beam search over the whole catalog."""

    test_beams: int = 20  # beams during training; `python -m grporec.evaluate --beams` for the final run
    # "eval": MiniOneRec's evaluation prompt (the published numbers' wording); "sft": the SFT next-item
    # prompt. A model trained from scratch knows only the wordings it was trained on (see docs/evaluation.md).
    prompt_style: Literal["eval", "sft"] = "eval"
    max_rows: int = -1  # evaluate on the first N rows only (-1: all)
    batch_prompts: int = 8  # prompts decoded together
    ks: list[int] = field(default_factory=lambda: list(DEFAULT_KS))  # cut-offs of HR@K and NDCG@K (those above the beams are left out)


def _sft_train_defaults() -> TrainConfig:
    return TrainConfig(lr=3e-4, warmup_ratio=0.03, max_grad_norm=1.0, prompts_per_step=64, micro_batch_prompts=16,
                       epochs=10, eval_steps=200, log_steps=50)


@dataclass
class SftConfig:
    """Supervised warm start: next SID, title <-> SID and title history -> SID, prompt tokens masked."""

    init: str = "tiny"  # "tiny": the from-scratch model (model.tiny); else a local HF base model directory
    # training tasks: sid_history, sid_suffix (every shorter suffix of each history -> the same next SID),
    # sid_markov (each history -> a next SID drawn from what followed its last SID in training, by count),
    # sid_transition (one sample per distinct last SID -> next SID of the training rows: rare ones repeated),
    # title2sid, sid2title (SID -> title), title_history (as rl.datasets)
    datasets: list[str] = field(default_factory=lambda: ["sid_history", "title2sid", "sid2title", "title_history"])
    max_prompt_tokens: int | None = None  # replaced by data.max_prompt_tokens (one rule for every stage); must be unset
    # The model kept as <output_dir>/best: the one with the lowest valid loss, or (ndcg) the highest valid
    # NDCG@10 of select_beams-beam constrained decoding (what the recommender is judged by; slower to measure).
    select_on: Literal["loss", "ndcg"] = "loss"
    select_beams: int = 20  # beams for select_on=ndcg
    patience: int = 3  # evaluations without a better selection metric before stopping (0: never stop early)
    # Residual dropout while training (embeddings, and each block's attention and MLP outputs; off in
    # evaluation): the regulariser Qwen2/Llama configurations lack. 0.1-0.2 in TIGER-style recipes.
    dropout: float = 0.0
    valid_max_rows: int = 2000  # valid rows for the valid loss / NDCG (-1: all)
    # Fill each step's micro-batches (sft.train.micro_batch_prompts) with samples of similar length: the step's gradient
    # is the same token-weighted sum, with far less padding (bench/sft_micro_batches.py); false: in the stream's order.
    length_sorted_micro_batches: bool = True
    train: TrainConfig = field(default_factory=_sft_train_defaults)  # prompts_per_step = samples per step


@dataclass
class StageConfig:
    """One stage of a staged recipe (`grporec recipe`): SFT or GRPO, from the previous stage's model, or SASRec."""

    name: str  # its directory under output_dir, and its row in the recipe's results
    # sft: grporec.sft (the model kept is its valid-best, sft.select_on); grpo: the loop's last checkpoint; sasrec: the
    # sasrec: section's SASRec, which later stages' sasrec and teacher rewards and the blend use (reward.sasrec_path);
    # blend: the blended recommender of the last generative model (and the SASRec), (a, w) fitted on valid
    kind: Literal["sft", "grpo", "sasrec", "blend"]
    # section.key=value on top of this file, before the command line's: what this stage changes. Its start is set
    # for it (sft.init / model.path: the previous stage's model; the first SFT stage keeps sft.init). Prompt
    # settings the stage does not set come from the model it starts from (grporec.models.settings).
    overrides: list[str] = field(default_factory=list)


@dataclass
class Config:
    """The root of a run's configuration."""

    data: DataConfig
    model: ModelConfig
    rl: RLConfig = field(default_factory=RLConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    sasrec: SasrecConfig = field(default_factory=SasrecConfig)
    blend: BlendConfig = field(default_factory=BlendConfig)
    sft: SftConfig = field(default_factory=SftConfig)
    seed: int = 42  # seeds data order, sampling and model initialisation
    output_dir: str = "runs/default"  # where a run writes its checkpoints, logs and config
    # A staged recipe, run in order by `grporec recipe` (and `grporec demo`): stages {name, kind: sft | grpo | sasrec | blend,
    # overrides: [section.key=value, ...]}, each in output_dir/<name>, initialised from the previous stage's model
    # (README, "Recipes"). Empty: the demo's two stages, SFT then GRPO, as configured.
    recipe: list[StageConfig] = field(default_factory=list)


def load_config(path: str | Path, overrides: list[str] | None = None, cls: type = Config) -> Any:
    """Read a YAML file, apply `section.key=value` overrides (values parsed as YAML: `lr=1e-5` works),
    and build a typed `cls` (`Config` unless a tool has its own tree); a problem, a value out of its
    range included, is a ConfigError naming the key and the file or the command line (`grporec.typed_yaml`)."""
    return load_typed(path, overrides, cls, check=check_values if cls is Config else None)
