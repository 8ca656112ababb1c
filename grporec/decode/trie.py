"""`SidTrie`: the catalog's completions as per-depth state-transition tensors.

Built once from the token ids of every catalog completion (`sid + "\\n"` tokenized, then EOS), so
it works for any tokenizer and any number of tokens per SID. Depth d has `S_d` states and a
compact column set: the `C_d` token ids that occur at position d of some completion.
`next_state[d]` is an int tensor [S_d, C_d] holding the child state's index at depth d+1, or -1
where the token is not allowed. Finding the allowed tokens and next states for all rows is one
gather (`next_state[d][state]`), with no Python loop over rows and no host sync.

Completions of different lengths are padded after their EOS with a PAD column: a finished state
has the PAD column as its only child, the decoder emits `pad_id` there and adds 0 to the score
and the completion mask. Every completion therefore ends at depth L = the longest completion.
The decoder never sees strings: leaves carry an integer label (an index into the list the
caller passed, e.g. the catalog's SIDs), from which the caller names what was generated.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

PAD_COLUMN = -1  # marker in `columns` for the padding column after EOS


@dataclass
class SidTrie:
    """Per-depth transition tables. Build with `SidTrie.build`.

    columns[d]: [C_d] long, token id per column (PAD_COLUMN for the padding column).
    next_state[d]: [S_d, C_d] int32, child state index at depth d+1, -1 where not allowed.
    leaf_label[S_L]: long, the label index of each final state.
    paths: [num_labels, L] long, each label's token ids, `pad_id` after its EOS, and
        path_lengths: [num_labels] long, its length (what ground-truth injection writes into a
        rollout; a length, not a search for pad_id, because pad_id may equal EOS).
    """

    columns: list[torch.Tensor]
    next_state: list[torch.Tensor]
    leaf_label: torch.Tensor
    pad_id: int
    num_labels: int
    paths: torch.Tensor | None = None
    path_lengths: torch.Tensor | None = None
    names: list[str] | None = None  # optional name per label (e.g. the SID), returned as is
    codes: torch.Tensor | None = None  # optional [num_labels, K] integer row per label (e.g. SID level codes), returned as is

    @property
    def depth(self) -> int:
        """L: the number of decode steps (tokens of the longest completion)."""
        return len(self.next_state)

    @classmethod
    def build(cls, sequences: list[list[int]], pad_id: int, device: str | torch.device = "cpu",
              names: list[str] | None = None, codes: torch.Tensor | None = None) -> "SidTrie":
        """Build from one token-id sequence per label (duplicates share a path and a leaf).

        Args:
            sequences: sequences[i] is the completion of label i (e.g. catalog SID i), EOS last.
            pad_id: token emitted after a shorter completion's EOS.
            device: where the tables live (the model's device).
            names: optional name of each label, carried opaquely (the trie never reads it).
            codes: optional [num_labels, K] integers per label, carried opaquely like names.
        """
        if names is not None and len(names) != len(sequences):
            raise ValueError(f"{len(names)} names for {len(sequences)} sequences")
        if codes is not None and (codes.dim() != 2 or codes.shape[0] != len(sequences)):
            raise ValueError(f"codes must be [{len(sequences)}, K], got {tuple(codes.shape)}")
        if not sequences or any(len(s) == 0 for s in sequences):
            raise ValueError("SidTrie.build needs at least one non-empty sequence")
        L = max(len(s) for s in sequences)
        padded = [list(s) + [PAD_COLUMN] * (L - len(s)) for s in sequences]
        states = [{(): 0}]  # per depth: prefix tuple -> local state index
        for d in range(L):
            nxt: dict[tuple, int] = {}
            for s in padded:
                nxt.setdefault(tuple(s[: d + 1]), len(nxt))
            states.append(nxt)
        columns, tables = [], []
        for d in range(L):
            toks = sorted({s[d] for s in padded if s[d] != PAD_COLUMN})
            if any(s[d] == PAD_COLUMN for s in padded):
                toks.append(PAD_COLUMN)
            col = {t: i for i, t in enumerate(toks)}
            table = torch.full((len(states[d]), len(toks)), -1, dtype=torch.int32)
            for prefix, child in states[d + 1].items():
                table[states[d][prefix[:-1]], col[prefix[-1]]] = child
            columns.append(torch.tensor(toks, dtype=torch.long, device=device))
            tables.append(table.to(device))
        leaf_label = torch.full((len(states[L]),), -1, dtype=torch.long)
        for i, s in enumerate(padded):
            leaf = states[L][tuple(s)]
            if leaf_label[leaf] < 0:  # duplicates (SID collisions upstream) map to the first label
                leaf_label[leaf] = i
        paths = torch.tensor([[pad_id if t == PAD_COLUMN else t for t in s] for s in padded], dtype=torch.long)
        lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
        return cls(columns=columns, next_state=tables, leaf_label=leaf_label.to(device), pad_id=pad_id,
                   num_labels=len(sequences), paths=paths.to(device), path_lengths=lengths.to(device), names=names,
                   codes=None if codes is None else codes.to(device))

    def to(self, device: str | torch.device) -> "SidTrie":
        return SidTrie([c.to(device) for c in self.columns], [t.to(device) for t in self.next_state],
                       self.leaf_label.to(device), self.pad_id, self.num_labels,
                       None if self.paths is None else self.paths.to(device),
                       None if self.path_lengths is None else self.path_lengths.to(device), self.names,
                       None if self.codes is None else self.codes.to(device))

    def path(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids [R, L] of labels [R] (all >= 0) and their mask (1 up to and including EOS)."""
        ids = self.paths[labels]
        mask = torch.arange(ids.shape[1], device=ids.device) < self.path_lengths[labels].unsqueeze(1)
        return ids, mask.long()

    def allowed(self, d: int, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Children of `state` [R] at depth d: (next_state [R, C_d], allowed mask [R, C_d]).

        Rows with state < 0 (an invalid beam) get no allowed column.
        """
        rows = self.next_state[d][state.clamp(min=0)]  # [R, C_d], one gather for all rows
        ok = (rows >= 0) & (state >= 0).unsqueeze(1)
        return rows, ok

    def emitted_tokens(self, d: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(token id per column [C_d], is-padding per column [C_d]) at depth d."""
        cols = self.columns[d]
        is_pad = cols == PAD_COLUMN
        return torch.where(is_pad, torch.full_like(cols, self.pad_id), cols), is_pad

    def label_of(self, final_state: torch.Tensor) -> torch.Tensor:
        """Label index per final state [R] (-1 for invalid rows)."""
        return torch.where(final_state >= 0, self.leaf_label[final_state.clamp(min=0)], torch.full_like(final_state, -1))

    def names_of(self, labels: torch.Tensor) -> list[str | None]:
        """Names of labels [R] (one host transfer); None for -1 or when the trie has no names."""
        if self.names is None:
            return [None] * labels.numel()
        return [self.names[i] if i >= 0 else None for i in labels.tolist()]

    def codes_of(self, labels: torch.Tensor) -> torch.Tensor | None:
        """Codes [R, K] of labels [R], -1 for -1 labels; None when the trie has no codes."""
        if self.codes is None:
            return None
        return torch.where((labels >= 0).unsqueeze(1), self.codes[labels.clamp(min=0)], -1)

    def stats(self) -> dict:
        """States per depth and table memory, for logs and the benchmark."""
        return {
            "depth": self.depth,
            "states_per_depth": [int(t.shape[0]) for t in self.next_state] + [int(self.leaf_label.numel())],
            "columns_per_depth": [int(c.numel()) for c in self.columns],
            "bytes": sum(t.numel() * t.element_size() for t in self.next_state + self.columns + [self.leaf_label]),
        }

    def describe(self) -> str:
        s = self.stats()
        return (f"SID trie: depth {s['depth']}, states per depth {s['states_per_depth']}, "
                f"columns per depth {s['columns_per_depth']}, {s['bytes'] / 1024:.1f} KiB")
