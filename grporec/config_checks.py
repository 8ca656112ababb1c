"""Value checks of a loaded `Config`: every numeric setting's range, and settings that mean nothing without another.

Run when a config is loaded (`grporec.config.load_config`), where the file or the command line that set a key can
be named, and again by the loops (`check_values(cfg)`) for configs built in code.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from grporec.typed_yaml import ConfigError, origin

if TYPE_CHECKING:
    from grporec.config import Config

# The range of every numeric setting with one: what it must be, as (test, words). Checked when a config is loaded
# (an impossible value is one line naming the key and whether the file or the command line set it, before
# anything loads) and again by the loops for configs built in code.
_RANGES = {
    "positive": (lambda v: v > 0, "> 0"),
    "non-negative": (lambda v: v >= 0, ">= 0"),
    "at least 1": (lambda v: v >= 1, "at least 1"),
    "at least 2": (lambda v: v >= 2, "at least 2"),
    "fraction": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "probability": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "rows": (lambda v: v == -1 or v >= 1, "-1 (all) or at least 1"),
    "steps": (lambda v: v == -1 or v >= 1, "-1 (use the epochs) or at least 1"),
    "betas": (lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "two values in [0, 1)"),
    "cut-offs": (lambda v: len(v) > 0 and all(k >= 1 for k in v), "positive cut-offs"),
    "positive list": (lambda v: len(v) > 0 and all(x > 0 for x in v), "a non-empty list of values > 0"),
    "fraction list": (lambda v: len(v) > 0 and all(0 <= x <= 1 for x in v), "a non-empty list of values in [0, 1]"),
}
# lr 0 is a legitimate run that must not move (a check); SFT asks for > 0 (VALUE_RANGES below).
_TRAIN_RANGES = {"lr": "non-negative", "weight_decay": "non-negative", "adam_betas": "betas", "warmup_ratio": "fraction",
                 "schedule_steps": "non-negative", "max_grad_norm": "positive", "prompts_per_step": "at least 1",
                 "micro_batch_prompts": "at least 1", "rollout_batch_prompts": "at least 1", "logps_batch_prompts": "non-negative",
                 "epochs": "at least 1", "max_steps": "steps", "log_steps": "at least 1", "eval_steps": "non-negative",
                 "save_steps": "non-negative", "save_total_limit": "at least 1", "max_bad_steps": "at least 1",
                 "stop_after": "non-negative"}
VALUE_RANGES = {
    **{f"train.{k}": v for k, v in _TRAIN_RANGES.items()}, **{f"sft.train.{k}": v for k, v in _TRAIN_RANGES.items()},
    "sft.train.lr": "positive", "train.micro_batch_prompts": "non-negative",
    "data.seq_title_samples": "non-negative", "data.hold_back": "non-negative", "data.successor_hints": "non-negative",
    "data.hint_drop": "fraction", "data.max_history": "at least 1",
    "data.max_prompt_tokens": "at least 1",
    "model.pad_vocab_to_multiple_of": "at least 1", "model.tiny.hidden_size": "at least 1", "model.tiny.num_layers": "at least 1",
    "model.tiny.num_heads": "at least 1", "model.tiny.num_kv_heads": "at least 1", "model.tiny.intermediate_size": "at least 1",
    "model.lora.rank": "non-negative", "model.lora.alpha": "positive", "model.lora.dropout": "probability",
    "rl.num_generations": "at least 2", "rl.temperature": "positive", "rl.beta": "non-negative", "rl.nll_coef": "non-negative",
    "rl.num_iterations": "at least 1", "rl.add_teacher": "non-negative", "rl.epsilon_low": "probability", "rl.epsilon_high": "non-negative",
    "rl.ref_sync_steps": "at least 1", "rl.ref_sync_alpha": "fraction",
    "eval.test_beams": "at least 1", "eval.max_rows": "rows", "eval.batch_prompts": "at least 1", "eval.ks": "cut-offs",
    "reward.markov_min_count": "at least 1", "reward.teacher_a": "positive",
    "sasrec.hidden": "at least 1", "sasrec.blocks": "at least 1", "sasrec.heads": "at least 1", "sasrec.dropout": "probability",
    "sasrec.max_len": "at least 1", "sasrec.lr": "positive", "sasrec.weight_decay": "non-negative", "sasrec.batch_size": "at least 1",
    "sasrec.epochs": "at least 1", "sasrec.patience": "non-negative",
    "blend.a_grid": "positive list", "blend.w_grid": "fraction list",
    "sft.select_beams": "at least 1", "sft.patience": "non-negative", "sft.dropout": "probability", "sft.valid_max_rows": "rows",
}


def check_values(cfg: Config, source=None) -> None:
    """Raise a ConfigError naming the first setting outside its range (VALUE_RANGES), and where it was set."""
    where = lambda key: origin(source, key) if source else "in the config"  # noqa: E731
    for key, rule in VALUE_RANGES.items():
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        ok, words = _RANGES[rule]
        if not ok(value):
            raise ConfigError(f"{key} must be {words}, got {value!r} ({where(key)})")
    # Settings that mean nothing without another one: refused here, where the file or command line can be named,
    # rather than ignored by the commands that never build the hints (evaluation without hints, SASRec).
    for key, value in (("data.hint_counts", cfg.data.hint_counts), ("data.hint_drop", cfg.data.hint_drop)):
        if value and not cfg.data.successor_hints:
            raise ConfigError(f"{key}={value} changes the successor hints, but data.successor_hints is 0 "
                              f"({where(key)}): set data.successor_hints (e.g. 5) or drop {key}")
    if cfg.data.successor_hints and cfg.data.prompt_text != "compact":
        raise ConfigError(f"data.successor_hints={cfg.data.successor_hints} needs data.prompt_text: compact (the hints line "
                          f"is part of the compact prompt), not {cfg.data.prompt_text!r} ({where('data.successor_hints')})")
