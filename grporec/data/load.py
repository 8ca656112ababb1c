"""From a `DataConfig` to loaded, cross-checked data: the catalog and the split CSVs.

This is the one place that turns config keys into files, so that a missing path names the
config key as well as the file, and every split is checked against the catalog (an SID that a
CSV mentions but the catalog lacks is an error before any training starts).
"""
from __future__ import annotations

from pathlib import Path

from grporec.config import DataConfig
from grporec.data.catalog import Catalog, load_catalog
from grporec.data.formats import DataError, Interaction, read_interactions, read_items
from grporec.errors import SettingsError

SPLITS = ("train", "valid", "test")


def data_path(cfg: DataConfig, key: str) -> Path:
    """The path behind config key `data.<key>`; a clear error when unset or absent."""
    value = getattr(cfg, key)
    if value is None:
        raise DataError(f"config key data.{key} is not set, but this run needs it")
    path = Path(value)
    if not path.is_file():
        raise DataError(f"{path}: file not found (config key data.{key})")
    return path


def load_data_catalog(cfg: DataConfig) -> Catalog:
    """The catalog from the info file, cross-checked against the index.json when configured."""
    index = data_path(cfg, "index_file") if cfg.index_file is not None else None
    return load_catalog(data_path(cfg, "info_file"), index)


def load_split(cfg: DataConfig, split: str, catalog: Catalog) -> list[Interaction]:
    """Rows of the train, valid or test CSV, every SID checked against the catalog."""
    if split not in SPLITS:
        raise SettingsError(f"split must be one of {SPLITS}, got {split!r}")
    path = data_path(cfg, f"{split}_file")
    rows = read_interactions(path)
    catalog.check_interactions(rows, str(path))
    return rows


def hold_back(rows: list[Interaction], n: int) -> tuple[list[Interaction], list[Interaction]]:
    """(kept, held): each user's n latest rows (longest history; the later row of a tie) held back, in file order.

    n = 0 holds nothing back. A user with n rows or fewer is held back whole."""
    if n == 0:
        return list(rows), []
    by_user: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_user.setdefault(r.user_id, []).append(i)
    held = set()
    for idx in by_user.values():
        held.update(sorted(idx, key=lambda i: (len(rows[i].history_ids), i))[-n:])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def training_rows(cfg: DataConfig, catalog: Catalog, stage: str) -> list[Interaction]:
    """The training rows a stage learns from: "sft" every row but the held-back ones (data.hold_back), "rl" the
    held-back rows alone, or every row when nothing is held back."""
    if stage not in ("sft", "rl"):
        raise ValueError(f"stage must be 'sft' or 'rl', got {stage!r}")
    kept, held = hold_back(load_split(cfg, "train", catalog), cfg.hold_back)
    if cfg.hold_back == 0:
        return kept
    if stage == "sft":
        if not kept:
            raise SettingsError(f"data.hold_back={cfg.hold_back} holds back every row of {cfg.train_file}: "
                                "SFT would have nothing to train on")
        return kept
    return held


def load_item_features(cfg: DataConfig) -> dict[str, dict]:
    return read_items(data_path(cfg, "item_file"))


def successor_hints(cfg: DataConfig, catalog: Catalog, seed: int):
    """The prompts' successor hints (data.successor_hints), counted on every training row (data_path names
    data.train_file when it is unset); None when off."""
    if cfg.successor_hints == 0:
        if cfg.hint_counts:
            raise SettingsError("data.hint_counts=true writes the counts of the successor hints, but "
                                "data.successor_hints is 0: set data.successor_hints (e.g. 5)")
        return None
    from grporec.data.hints import SuccessorHints

    if cfg.prompt_text != "compact":
        raise SettingsError(f"data.successor_hints={cfg.successor_hints} needs data.prompt_text: compact "
                            f"(the hints line is part of the compact prompt), not {cfg.prompt_text!r}")
    return SuccessorHints(load_split(cfg, "train", catalog), cfg.successor_hints, cfg.hint_drop, seed,
                          counts=cfg.hint_counts)
