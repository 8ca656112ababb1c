"""LoRA in plain PyTorch, with the SID token rows of the embedding and head trainable on their own.

`add_adapters` freezes the model and adds, to each targeted linear layer, a low-rank update
`W x + (alpha / r) B A x` (A: [r, in], Kaiming-uniform; B: [out, r], zeros, so a fresh adapter
changes nothing), and replaces the SID tokens' rows of the input embedding and output head by
trainable copies (the rest of the vocabulary stays frozen: SID tokens are what SFT teaches, and a
pretrained model's rows for them are new). Parameter names keep the base model's (`q_proj.weight`)
beside the new ones (`q_proj.lora_A`, `model.embed_tokens.sid_weight`), so `merged_state_dict` turns
a full state dict back into a plain HF one, and FSDP2 and DCP see ordinary modules.

`adapters_off` switches every adapter and SID row off: the model it started from, which is GRPO's
reference when it trains a fresh adapter on an SFT model; no second model is kept.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from grporec.config import LoraConfig
from grporec.errors import SettingsError

ADAPTER_KEYS = ("lora_A", "lora_B", "sid_weight")


class LoraLinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float):
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device, dtype=base.weight.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device, dtype=base.weight.dtype))
        if self.lora_A.device.type != "meta":
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear, and as LoRA's paper
        self.scale = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.enabled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        if not self.enabled:
            return out
        return out + F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B) * self.scale


class SidEmbedding(nn.Module):
    """The frozen input embedding with the SID tokens' rows replaced by trainable ones."""

    def __init__(self, base: nn.Embedding, sid_ids: torch.Tensor):
        super().__init__()
        self.weight = base.weight
        self.weight.requires_grad_(False)
        self.padding_idx = base.padding_idx
        self.sid_weight = nn.Parameter(base.weight.detach()[sid_ids].clone())
        index = torch.full((base.num_embeddings,), -1, dtype=torch.long, device=base.weight.device)
        index[sid_ids] = torch.arange(len(sid_ids), device=base.weight.device)
        self.register_buffer("sid_index", index, persistent=False)
        self.register_buffer("sid_ids", sid_ids.clone(), persistent=False)
        self.enabled = True

    @property
    def num_embeddings(self) -> int:
        return self.weight.shape[0]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = F.embedding(ids, self.weight, self.padding_idx)
        if not self.enabled:
            return out
        row = self.sid_index[ids]
        return torch.where((row >= 0).unsqueeze(-1), self.sid_weight[row.clamp(min=0)], out)


class SidHead(nn.Module):
    """The frozen output head with the SID tokens' columns computed from trainable rows (the
    embedding's own when the model ties them)."""

    def __init__(self, base: nn.Linear, sid_ids: torch.Tensor, sid_weight: nn.Parameter | None):
        super().__init__()
        self.weight = base.weight
        self.weight.requires_grad_(False)
        self.bias = base.bias
        self.in_features, self.out_features = base.in_features, base.out_features
        self.sid_weight = sid_weight if sid_weight is not None else nn.Parameter(base.weight.detach()[sid_ids].clone())
        self.register_buffer("sid_ids", sid_ids.clone(), persistent=False)
        self.enabled = True

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = F.linear(h, self.weight, self.bias)
        if not self.enabled:
            return out
        sid = F.linear(h, self.sid_weight, None if self.bias is None else self.bias[self.sid_ids])
        return out.index_copy(-1, self.sid_ids, sid)


def _targets(model: nn.Module, names: list[str]) -> list[tuple[nn.Module, str, nn.Linear]]:
    """(parent, attribute, layer) of every linear layer inside the decoder layers that `names` picks."""
    everything = names == ["all-linear"]
    found = []
    for layer in model.model.layers:
        for parent in layer.modules():
            for attr, child in parent.named_children():
                if isinstance(child, nn.Linear) and (everything or attr in names):
                    found.append((parent, attr, child))
    if not found:
        raise SettingsError(f"model.lora.target_modules: {names} matches no linear layer of the decoder layers "
                            "(Qwen/Llama names: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; or all-linear)")
    return found


def check_lora(cfg: LoraConfig, rl_reference_sync: bool = False) -> None:
    """Settings errors before any model is loaded."""
    if cfg.rank < 0:
        raise SettingsError(f"model.lora.rank must be >= 0 (0: no LoRA), got {cfg.rank}")
    if cfg.rank == 0:
        return
    if cfg.alpha <= 0 or not 0 <= cfg.dropout < 1:
        raise SettingsError(f"model.lora: alpha must be > 0 and dropout in [0, 1), got alpha={cfg.alpha}, dropout={cfg.dropout}")
    if rl_reference_sync:
        raise SettingsError("model.lora.rank > 0 uses the model with its adapters off as the reference, which cannot be "
                            "synced towards the policy: set rl.sync_ref_model=false (or rl.beta=0)")


def lora_for(cfg: LoraConfig, sid_tokens: list[str]):
    """The `prepare` step of `grporec.models.placement.place` that adds `cfg`'s adapters (None: no LoRA)."""
    if cfg.rank == 0:
        return None

    def prepare(model, tokenizer):
        return add_adapters(model, cfg, tokenizer.convert_tokens_to_ids(sid_tokens))

    return prepare


def add_adapters(model: nn.Module, cfg: LoraConfig, sid_token_ids: list[int]) -> nn.Module:
    """Freeze `model` and add LoRA adapters and trainable SID rows, in place (before FSDP2 sharding)."""
    model.requires_grad_(False)
    for parent, attr, child in _targets(model, list(cfg.target_modules)):
        setattr(parent, attr, LoraLinear(child, cfg.rank, cfg.alpha, cfg.dropout))
    if cfg.sid_rows:
        embed, head = model.get_input_embeddings(), model.get_output_embeddings()
        ids = torch.tensor(sorted(sid_token_ids), dtype=torch.long, device=embed.weight.device)
        tied = head is not None and head.weight is embed.weight
        rows = SidEmbedding(embed, ids)
        model.model.embed_tokens = rows
        if head is not None:
            model.lm_head = SidHead(head, ids, rows.sid_weight if tied else None)
    return model


def adapter_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (LoraLinear, SidEmbedding, SidHead))]


@contextmanager
def adapters_off(model: nn.Module):
    """The model without its adapters and trained SID rows, for the duration."""
    mods = adapter_modules(model)
    for m in mods:
        m.enabled = False
    try:
        yield model
    finally:
        for m in mods:
            m.enabled = True


class AdaptersOff:
    """GRPO's reference when LoRA trains the policy: the policy called with its adapters off (the
    model it started from), so that no second model is loaded. `wrapped` names the model called."""

    def __init__(self, model: nn.Module):
        self.wrapped = model

    def __call__(self, *args, **kwargs):
        with adapters_off(self.wrapped):
            return self.wrapped(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.wrapped, name)


def merged_state_dict(state: dict[str, torch.Tensor], scale: float, sid_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """A plain HF state dict from the full state dict of an adapted model: each `W + scale B A`,
    and the trained SID rows (`sid_ids`, in `sid_weight`'s order) written into the embedding and
    head. Pure: `state` is not changed."""
    out = {k: v for k, v in state.items() if not k.endswith(ADAPTER_KEYS)}
    for key, a in state.items():
        if key.endswith(".lora_A"):
            prefix = key[: -len("lora_A")]
            out[prefix + "weight"] = state[prefix + "weight"] + scale * (state[prefix + "lora_B"] @ a)
        elif key.endswith(".sid_weight"):
            weight = key[: -len("sid_weight")] + "weight"
            w = out[weight].clone()
            w[sid_ids.to(w.device)] = a.to(w.dtype)
            out[weight] = w
    return out


def adapter_only(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The trainable part of a full state dict: what an adapter file holds (the head's SID rows
    once, under the embedding's name, when the model ties them)."""
    out, seen = {}, set()
    for k, v in state.items():
        if k.endswith(ADAPTER_KEYS) and v.data_ptr() not in seen:
            seen.add(v.data_ptr())
            out[k] = v.contiguous()
    return out


def split_for_saving(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[dict, dict | None, dict | None]:
    """(plain HF state dict, adapter tensors, adapter config) of a full state dict of `model`;
    the last two None when `model` has no adapters."""
    mods = adapter_modules(model)
    if not mods:
        return state, None, None
    lora = [m for m in mods if isinstance(m, LoraLinear)]
    scale = lora[0].scale if lora else 1.0
    rows = [m for m in mods if isinstance(m, SidEmbedding)]
    sid_ids = rows[0].sid_ids.cpu() if rows else torch.zeros(0, dtype=torch.long)
    tensors = adapter_only(state)
    config = {"rank": lora[0].lora_A.shape[0] if lora else 0, "scale": scale, "sid_token_ids": sid_ids.tolist(),
              "tied_sid_rows": "lm_head.sid_weight" in state and "lm_head.sid_weight" not in tensors,
              "adapted": sorted({k[: -len(".lora_A")] for k in state if k.endswith(".lora_A")})}
    return merged_state_dict(state, scale, sid_ids), tensors, config


def save_adapter(out, tensors: dict, config: dict) -> None:
    """The adapter alone: `adapter_model.safetensors` (A, B and SID rows) and `adapter_config.json`
    (rank, scale, SID token ids, adapted layers): enough to apply it to the base model it was trained on."""
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu() for k, v in tensors.items()}, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps(config, indent=1) + "\n")
