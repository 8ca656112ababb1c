"""SASRec (Kang & McAuley, 2018): causal self-attention over a user's item history.

The classical sequential recommender that every grporec report compares against, and the model
behind the `sasrec` (collaborative-filtering) reward. Items are numbered by catalog order
(0..N-1, shifted by one inside the model so that 0 is padding); histories are the last
`max_len` items, left-padded; the representation at the last position scores every catalog
item by a dot product with the (shared) item embeddings, trained with full-softmax
cross-entropy. Saved as safetensors plus a JSON of its shape.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn


@dataclass
class SasrecShape:
    num_items: int
    hidden: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.2
    max_len: int = 10


class SASRec(nn.Module):
    def __init__(self, shape: SasrecShape):
        super().__init__()
        self.shape = shape
        h = shape.hidden
        self.item_emb = nn.Embedding(shape.num_items + 1, h, padding_idx=0)
        self.pos_emb = nn.Embedding(shape.max_len, h)
        self.drop = nn.Dropout(shape.dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(h, shape.heads, dim_feedforward=h, dropout=shape.dropout,
                                       batch_first=True, norm_first=True)
            for _ in range(shape.blocks)
        )
        self.norm = nn.LayerNorm(h)
        nn.init.normal_(self.item_emb.weight, std=0.02)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """history [B, max_len] item indices + 1, left-padded with 0 -> logits [B, N] over items."""
        B, L = history.shape
        pad = history == 0
        x = self.item_emb(history) * self.shape.hidden ** 0.5 + self.pos_emb.weight[-L:]
        x = self.drop(x) * (~pad).unsqueeze(-1)
        # Causal mask plus padded keys; each position may always see itself, so that padded
        # positions (whose output is never used) do not produce NaN from an all-masked row.
        causal = torch.ones(L, L, dtype=torch.bool, device=history.device).triu(1)
        blocked = causal.unsqueeze(0) | pad.unsqueeze(1)  # [B, L(query), L(key)]
        blocked &= ~torch.eye(L, dtype=torch.bool, device=history.device)
        mask = torch.zeros(B, L, L, device=history.device).masked_fill(blocked, float("-inf"))
        mask = mask.repeat_interleave(self.shape.heads, dim=0)
        for block in self.blocks:
            x = block(x, src_mask=mask)
        h = self.norm(x[:, -1])  # [B, hidden]
        return h @ self.item_emb.weight[1:].T  # [B, N]

    def save(self, out: str | Path) -> None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(out / "model.safetensors"))
        (out / "sasrec.json").write_text(json.dumps(asdict(self.shape), indent=2))

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "SASRec":
        path = Path(path)
        if not (path / "sasrec.json").is_file():
            raise FileNotFoundError(f"{path}: no SASRec model (sasrec.json); train one with "
                                    "`python -m grporec.sasrec train --config FILE`")
        model = cls(SasrecShape(**json.loads((path / "sasrec.json").read_text())))
        model.load_state_dict(load_file(str(path / "model.safetensors")))
        return model.to(device).eval()


def encode_histories(histories: list[list[int]], max_len: int) -> torch.Tensor:
    """Item-index histories -> [B, max_len] (index + 1), left-padded with 0, last items kept."""
    out = torch.zeros(len(histories), max_len, dtype=torch.long)
    for i, h in enumerate(histories):
        h = h[-max_len:]
        if h:
            out[i, max_len - len(h):] = torch.tensor(h) + 1
    return out


def sid_scores(item_logits: torch.Tensor, item_sid: torch.Tensor, num_sids: int) -> torch.Tensor:
    """Item scores [B, N] -> SID scores [B, S]: each SID's best item (a hit is SID equality)."""
    out = item_logits.new_full((item_logits.shape[0], num_sids), float("-inf"))
    return out.scatter_reduce(1, item_sid.expand_as(item_logits), item_logits, reduce="amax")
