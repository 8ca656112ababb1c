"""KV cache for G completions per prompt, and prefix-shared attention over it.

`BeamKVLayer` is a transformers `DynamicLayer` with two decoding modes after the prefill:
- expanded: one buffer [B*G, kv_heads, T + L, head_dim]; each prompt's KV is copied into its G
  rows once, new tokens are written in place (no `torch.cat` of the whole cache per step), and
  reordering beams within their group moves only the generated tail. Works with any attention.
- shared: the prompt's KV stays once per prompt [B, kv_heads, T, head_dim] and only the tail
  [B*G, kv_heads, L, head_dim] is per beam; `grporec.models.attention.shared_prefix_attention`
  attends each beam's query to its prompt's KV and its own tail.
"""
from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer


class BeamKVLayer(DynamicLayer):
    """One layer's KV: filled by prefill, then expanded or shared across each prompt's G rows."""

    prompt_len: int | None = None
    shared: bool = False

    def expand(self, group_size: int, max_new: int, shared: bool) -> None:
        B, H, T, D = self.keys.shape
        G, self.prompt_len, self.shared = group_size, T, shared
        if shared:
            self.prompt_keys, self.prompt_values = self.keys, self.values
            self._kbuf = self.keys.new_empty(B * G, H, max_new, D)
            self._vbuf = self.values.new_empty(B * G, self.values.shape[1], max_new, self.values.shape[3])
            self._start = 0  # the buffers hold only the tail
        else:
            self._kbuf = self.keys.new_empty(B * G, H, T + max_new, D)
            self._vbuf = self.values.new_empty(B * G, self.values.shape[1], T + max_new, self.values.shape[3])
            # One broadcast copy per tensor: prompt b's KV lands in rows b*G .. b*G+G-1.
            self._kbuf.view(B, G, *self._kbuf.shape[1:])[:, :, :, :T].copy_(self.keys.unsqueeze(1))
            self._vbuf.view(B, G, *self._vbuf.shape[1:])[:, :, :, :T].copy_(self.values.unsqueeze(1))
            self._start = T  # the buffers hold prompt then tail
        self._n = self._start
        self.keys, self.values = self._kbuf[:, :, :self._n], self._vbuf[:, :, :self._n]

    def update(self, key_states, value_states, *args, **kwargs):
        if self.prompt_len is None:
            return super().update(key_states, value_states, *args, **kwargs)
        q = key_states.shape[-2]
        self._kbuf[:, :, self._n:self._n + q] = key_states
        self._vbuf[:, :, self._n:self._n + q] = value_states
        self._n += q
        self.keys, self.values = self._kbuf[:, :, :self._n], self._vbuf[:, :, :self._n]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        if self.shared:
            return self.prompt_len + self._n
        return super().get_seq_length()

    def reorder_tail(self, rows: torch.Tensor) -> None:
        """New row i continues old row rows[i] of the same prompt: move only generated positions."""
        if self._n > self._start:
            s, n = self._start, self._n
            self._kbuf[:, :, s:n] = self._kbuf[rows, :, s:n]  # the right side is a copy: safe in place
            self._vbuf[:, :, s:n] = self._vbuf[rows, :, s:n]
