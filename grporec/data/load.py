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


def load_item_features(cfg: DataConfig) -> dict[str, dict]:
    return read_items(data_path(cfg, "item_file"))
