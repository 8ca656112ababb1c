"""Semantic reward: cosine similarity between the target's and the completion's item embeddings.

Embeddings come from a `.npy` matrix [N_items, D] whose rows follow the catalog's item order
(ascending item id). A SID shared by several items (a collision) uses its first item's row.
Invalid completions, and targets without an embedding, get 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from grporec.data.catalog import Catalog
from grporec.errors import SettingsError
from grporec.rewards.inputs import RewardInputs


@dataclass
class SidEmbeddings:
    """Unit-norm vectors per distinct SID: `vectors` [S, D], `row` SID -> index."""

    vectors: torch.Tensor
    row: dict[str, int]

    @classmethod
    def from_item_matrix(cls, matrix: np.ndarray | torch.Tensor, catalog: Catalog, source: str = "<matrix>") -> "SidEmbeddings":
        m = torch.as_tensor(np.asarray(matrix), dtype=torch.float32)
        if m.dim() != 2 or m.shape[0] != len(catalog):
            raise SettingsError(
                f"{source}: embedding matrix has shape {tuple(m.shape)} but the catalog has {len(catalog)} items; "
                "rows must follow the catalog's item order (ascending item id), one row per item"
            )
        if not torch.isfinite(m).all():
            raise SettingsError(f"{source}: embedding matrix has non-finite values")
        first_item = {}
        for i, it in enumerate(catalog.items):
            first_item.setdefault(it.sid, i)
        rows = list(first_item.values())
        vec = torch.nn.functional.normalize(m[rows], dim=1)
        return cls(vectors=vec, row={sid: k for k, sid in enumerate(first_item)})

    @classmethod
    def load(cls, path: str | Path, catalog: Catalog) -> "SidEmbeddings":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: semantic embedding file not found (config key reward.semantic_embeddings)")
        try:
            matrix = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise SettingsError(f"{path}: not a numeric .npy matrix ({e})") from None
        return cls.from_item_matrix(matrix, catalog, source=str(path))


def semantic_reward(x: RewardInputs, emb: SidEmbeddings) -> torch.Tensor:
    """[B*G] cosine(target, completion); 0 for invalid completions or unknown SIDs."""
    out = torch.zeros(len(x.completions))
    idx_c = [emb.row.get(c, -1) if c is not None else -1 for c in x.completions]
    idx_t = [emb.row.get(t, -1) for t in x.targets_per_row()]
    ok = [i for i, (a, b) in enumerate(zip(idx_c, idx_t)) if a >= 0 and b >= 0]
    if ok:
        a = emb.vectors[[idx_c[i] for i in ok]]
        b = emb.vectors[[idx_t[i] for i in ok]]
        out[ok] = (a * b).sum(-1)
    return out
