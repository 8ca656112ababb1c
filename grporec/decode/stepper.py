"""`Stepper`: the model run one token at a time over grporec's KV cache.

It owns the cache, the attention mask and each row's next position, and moves them together:
prefill B prompts once, expand to G rows per prompt, reorder beams within their groups, step.
Beam search and sampling share it, so there is one implementation of the cache logic.
"""
from __future__ import annotations

import torch
from transformers import DynamicCache

from grporec.decode.kv import BeamKVLayer
from grporec.models.attention import SharedPrefixContext, attention, supports_shared_prefix
from grporec.models.inputs import forward_kwargs, positions, prompt_rows


class Stepper:
    """Prefill, expand, reorder, step; returns last-position logits in fp32.

    Args:
        model: an HF causal LM whose forward takes a KV cache.
        shared_prefix: use prefix-shared attention after the prefill (None: when the
            architecture supports it, see `grporec.models.attention.supports_shared_prefix`).
    """

    def __init__(self, model: torch.nn.Module, shared_prefix: bool | None = None):
        self.model = model
        self.cache = DynamicCache()
        self.cache.layer_class_to_replicate = BeamKVLayer  # layers are created on first use
        self.shared = supports_shared_prefix(model) if shared_prefix is None else shared_prefix
        self.context = None

    def _forward(self, ids: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        kwargs = forward_kwargs(self.model, self.cache, keep_last=1)
        with attention(self.model, self.context):
            # The cache object is updated in place by the model.
            out = self.model(input_ids=ids, attention_mask=self.mask, position_ids=pos, use_cache=True, **kwargs)
        return out.logits[:, -1].float()  # [R, V] fp32

    def _own_layers(self) -> bool:
        layers = getattr(self.cache, "layers", None)
        return bool(layers) and all(isinstance(layer, BeamKVLayer) for layer in layers)

    def prefill(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        """Prefill B prompts once. Returns last-position logits [B, V] fp32."""
        self.mask = prompt_mask
        self.next_pos = prompt_mask.sum(-1)  # [B] position of the first generated token
        return self._forward(prompt_ids, positions(prompt_mask))

    def expand(self, group_size: int, max_new: int) -> None:
        """Give each of the B prompts G rows: new row b*G + k continues prompt b."""
        rows = prompt_rows(self.mask.shape[0], group_size, self.mask.device)
        if self._own_layers():
            for layer in self.cache.layers:
                layer.expand(group_size, max_new, shared=self.shared)
            if self.shared:
                self.context = SharedPrefixContext([(l.prompt_keys, l.prompt_values) for l in self.cache.layers], self.mask)
        else:
            self.cache.reorder_cache(rows)
        self.mask = self.mask[rows]
        self.next_pos = self.next_pos[rows]

    def reorder_within_groups(self, rows: torch.Tensor) -> None:
        """New row i continues old row rows[i], where both rows belong to the same prompt."""
        if self._own_layers():
            for layer in self.cache.layers:
                layer.reorder_tail(rows)
        else:
            self.cache.reorder_cache(rows)
        # Mask and positions are identical within a group: nothing to move.

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per row [R]; returns the next logits [R, V] fp32."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        pos = self.next_pos.unsqueeze(1)
        self.next_pos = self.next_pos + 1
        return self._forward(tokens.unsqueeze(1), pos)
