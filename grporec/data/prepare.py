"""Data a run needs before it starts: the embedded synthetic dataset, and a training split derived
from a valid split (datasets without a public train split, e.g. Office_Products). Each is made once
and reused: the demo, the staged recipes and the benchmarks call these before anything loads.
"""
from __future__ import annotations

from pathlib import Path

from grporec.config import Config
from grporec.data import synth
from grporec.errors import SettingsError


def ensure_synthetic_data(cfg: Config) -> None:
    """Write the configured synthetic dataset unless its info file already exists."""
    d = cfg.data
    if d.synthetic_preset is None or Path(d.info_file).is_file():
        return
    if d.synthetic_preset not in synth.PRESETS:
        raise SettingsError(f"data.synthetic_preset: unknown preset {d.synthetic_preset!r}; choose from {sorted(synth.PRESETS)}")
    root = d.synthetic_root or str(Path(d.info_file).parent.parent)
    paths = synth.write(synth.PRESETS[d.synthetic_preset], d.synthetic_seed, root)
    if Path(d.info_file) != paths.info:
        raise SettingsError(f"data.info_file is {d.info_file} but the '{d.synthetic_preset}' preset writes {paths.info}")
    print(f"[data] generated the synthetic '{d.synthetic_preset}' dataset (seed {d.synthetic_seed}) in {root}")


def ensure_derived_data(cfg: Config) -> None:
    """Derive data.train_file and data.valid_file from data.derive_from unless both exist."""
    d = cfg.data
    if d.derive_from is None or (d.train_file and Path(d.train_file).is_file() and d.valid_file and Path(d.valid_file).is_file()):
        return
    if not d.train_file or not d.valid_file:
        raise SettingsError("data.derive_from needs data.train_file and data.valid_file: the files it writes")
    from grporec.data.derive import split_holdout, write_csv
    from grporec.data.formats import read_interactions

    train, held = split_holdout(read_interactions(d.derive_from))
    write_csv(held, d.valid_file)
    write_csv(train, d.train_file)
    print(f"[data] derived {len(train)} training rows ({d.train_file}) and {len(held)} held-out valid rows "
          f"({d.valid_file}) from {d.derive_from}")
