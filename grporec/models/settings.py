"""The prompt settings a model was trained with, saved beside it and used by whatever loads it next.

A model learns one way of reading a user: its prompt format, the words around the history, how
many history items it sees and where a long prompt is cut. Evaluation, `recommend`, GRPO and the
next SFT stage must build prompts the same way, or they score a model on prompts it never saw
(a last-item model read with 10-item prompts loses a quarter of its NDCG on Office). So every
model directory grporec writes records these settings in `grporec.json`, and the commands that
load a model adopt them: the model's value replaces the config file's, with a note when they
differ; a value given on the command line (or in a recipe stage's own overrides) wins over the
model's, with a note saying so. The prompt format is the exception that stays an error when the
two disagree (grporec.models.format): other tokens, not merely another prompt.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from grporec.models.format import RECORD_FILE, FormatError, check_recorded_format

# The settings a model carries, as (section, field) of the run config; the record's keys are "section.field".
PROMPT_SETTINGS = (("data", "prompt_format"), ("data", "prompt_text"), ("data", "max_history"),
                   ("data", "max_prompt_tokens"), ("eval", "prompt_style"), ("data", "successor_hints"),
                   ("data", "hint_counts"))


def settings_of(cfg) -> dict:
    """{"data.max_history": 1, ...}: the prompt settings of a run config, as the record stores them."""
    return {f"{section}.{name}": getattr(getattr(cfg, section), name) for section, name in PROMPT_SETTINGS}


def record_settings(model_dir: str | Path, settings: dict) -> None:
    """Write the record beside a saved model. `prompt_format` stays a top-level key too, as earlier
    grporec versions wrote it (and as `grporec.models.format.recorded_format` reads it)."""
    record = {"prompt_format": settings["data.prompt_format"], "settings": settings}
    (Path(model_dir) / RECORD_FILE).write_text(json.dumps(record, indent=1) + "\n")


def recorded_settings(model_dir: str | Path) -> dict:
    """The settings recorded beside a model ({} for a directory grporec did not write, e.g. a base
    model; only the format for one an earlier grporec version wrote)."""
    path = Path(model_dir) / RECORD_FILE
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
        settings = dict(record.get("settings") or {})
        settings.setdefault("data.prompt_format", record["prompt_format"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise FormatError(f"{path}: not a grporec record (expected {{\"prompt_format\": ..., \"settings\": {{...}}}})") from None
    known = {f"{s}.{n}" for s, n in PROMPT_SETTINGS}
    return {k: v for k, v in settings.items() if k in known}


def override_keys(overrides: list[str]) -> set[str]:
    """The dotted keys a list of `section.key=value` overrides sets."""
    return {item.partition("=")[0].strip() for item in overrides}


def adopt_model_settings(cfg, model_dir: str | Path | None, explicit: set[str], key: str = "--model"):
    """(config, notes): `cfg` with the prompt settings recorded beside `model_dir`, except those in
    `explicit` (keys set on the command line or by a recipe stage), which keep their value.

    Args:
        cfg: a run config (grporec.config.Config).
        model_dir: the model the run loads (None, or a directory without a record: nothing changes).
        explicit: dotted keys the user set on purpose, e.g. {"data.max_history"}.
        key: the setting or option that names the model, for the notes.
    Returns:
        The adjusted config and one line per setting that differs between the model and the run.
    Raises:
        FormatError when an explicit data.prompt_format differs from the model's.
    """
    recorded = recorded_settings(model_dir) if model_dir is not None else {}
    notes = []
    for dotted, saved in recorded.items():
        section, name = dotted.split(".")
        current = getattr(getattr(cfg, section), name)
        if saved == current:
            continue
        if dotted in explicit:
            if dotted == "data.prompt_format":  # other tokens, not another prompt: refused, as format.py refuses it
                check_recorded_format(model_dir, current, key)
            notes.append(f"{dotted}={current} as set, not the {saved} that {model_dir} was trained with")
            continue
        part = dataclasses.replace(getattr(cfg, section), **{name: saved})
        cfg = dataclasses.replace(cfg, **{section: part})
        notes.append(f"{dotted}={saved}, as {model_dir} was trained (the config had {current}; set it on the command "
                     "line to override)")
    return cfg, notes
