"""The disk a run writes to: how much its checkpoints will take, whether it fits, and the earlier
runs' checkpoint sets a fresh start set aside (`superseded-*`, grporec.resume).

Checked once before the first step (grporec.steps.start_run), so that a run that cannot keep its
checkpoints fails at once with one line, not at step N while writing one. Nothing of another run
is deleted unless the user asks (`train.drop_superseded=true`).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from grporec.errors import SettingsError

GIB = 2 ** 30
SUPERSEDED = "superseded-"  # prefix of the directories a fresh run moves an earlier run's files into


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def tree_bytes_of(paths: list[Path]) -> int:
    return sum(tree_bytes(p) for p in paths)


def superseded_sets(out: Path) -> list[Path]:
    return sorted(p for p in out.glob(f"{SUPERSEDED}*") if p.is_dir()) if out.is_dir() else []


def drop_superseded(out: Path) -> tuple[int, int]:
    """Delete the superseded sets in `out`; (how many, bytes freed)."""
    sets = superseded_sets(out)
    freed = tree_bytes_of(sets)
    for p in sets:
        shutil.rmtree(p)
    return len(sets), freed


def checkpoint_bytes(model, reference=None) -> int:
    """About what one checkpoint takes: the policy in HF format (fp32), its state again in the sharded
    state with AdamW's two moments of every trainable parameter, and the reference as it is stored."""
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    ref = sum(p.numel() * p.element_size() for p in reference.parameters()) if reference is not None else 0
    return 4 * params + 4 * params + 8 * trainable + ref


def check_room(out: Path, per_checkpoint: int, keep: int, existing: int, key: str) -> None:
    """Refuse a run whose checkpoints cannot fit: it keeps `keep` and writes one more before pruning
    the oldest, less the `existing` ones of this run already on the disk."""
    need = per_checkpoint * max(1, keep + 1 - existing)
    free = shutil.disk_usage(out).free
    if free >= need:
        return
    sets = superseded_sets(out)
    aside = (f"; {len(sets)} superseded set(s) of earlier runs hold {tree_bytes_of(sets) / GIB:.1f} GiB in {out}: "
             f"{key}.drop_superseded=true deletes them (or rm -r {out}/{SUPERSEDED}*)") if sets else ""
    raise SettingsError(f"{out}: not enough disk for this run's checkpoints: {need / GIB:.1f} GiB needed ({key}.save_total_limit="
                        f"{keep} of ~{per_checkpoint / GIB:.2f} GiB, and one more while the newest is written), "
                        f"{free / GIB:.1f} GiB free{aside}; or lower {key}.save_total_limit, or another output_dir")
