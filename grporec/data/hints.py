"""Successor hints (`data.successor_hints: K`): the K items that most often followed the history's last item in the
training rows, written into the prompt after the history.

Why (issue 34): the generative model generalises to transitions it never saw, the Markov chain counts the ones it
did, and one model has not had both. With the counts in its prompt, the model can learn when to copy a counted
successor and when to look past them, instead of having to memorise every training transition in its weights.

A training row must not read its own answer off its hints: its own transition is counted once less for it (leave
one out), so a transition seen once in training is no hint for the row that holds it, as it would not be for a
new user. Evaluation rows (valid, test, `recommend`) read the full training counts. With `data.hint_drop: p` a
seeded share p of the training rows (with their suffixes) loses its own transition altogether, however often it
was seen: at evaluation the answer is among K = 5 hints for ~13% of valid rows, while leave-one-out leaves it there
for ~42% of the training rows (bench/experiments/hint_coverage.py); dropping brings training closer to evaluation.

With `data.hint_counts: true` each hint carries its count and the line ends with the last item's number of counted
transitions: `<a_1><b_2><c_3> 6 <a_4><b_5><c_6> 3 / 14`. Bare hints cost the model the rows whose answer is not a
counted successor (it learns to copy them); the counts are what the blend weighs them by,
(c(last -> i) + a p(i)) / (c(last) + a), so with them the model can tell a successor seen 6 times in 14 from one
seen once.
"""
from __future__ import annotations

import hashlib
from collections import Counter

from grporec.data.formats import Interaction
from grporec.metrics import transition_counts


def row_key(r: Interaction) -> tuple[str, str, str]:
    """What identifies a training row and every suffix of it: the user, the last history item and the target."""
    return (r.user_id, r.history_ids[-1] if r.history_ids else "", r.item_id)


class SuccessorHints:
    """The K most frequent successors of an item in `rows`, ties broken by SID (deterministic).

    Args:
        rows: the training rows whose transitions are counted.
        k: how many successors a prompt gets (at most; an item with fewer successors gets fewer).
        drop: the share of training rows whose own transition is left out entirely (in [0, 1]).
        seed: chooses that share (a hash of the seed and the row's key, so independent of row order).
        counts: write each hint's count and the last item's total after the hints (`line`).
    """

    def __init__(self, rows: list[Interaction], k: int, drop: float = 0.0, seed: int = 0, counts: bool = False):
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.k, self.drop, self.seed, self.counts = k, drop, seed, counts
        self.follows: dict[str, Counter] = transition_counts(rows)

    def dropped(self, key: tuple[str, str, str]) -> bool:
        """Whether a training row (by `row_key`) is in the seeded share whose own transition is left out."""
        if self.drop <= 0:
            return False
        digest = hashlib.sha256(repr((self.seed, key)).encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2 ** 64 < self.drop

    def counted(self, r: Interaction, training: bool) -> tuple[list[tuple[str, int]], int]:
        """([(hint SID, count)], most frequent first; the last item's total count) for a row's prompt. `training`: the
        row is one of the counted rows, so its own transition is counted once less (all of it for a dropped row)."""
        if not r.history_sids:
            return [], 0
        counts = self.follows.get(r.history_sids[-1], Counter())
        if training and r.item_sid in counts:
            counts = Counter(counts)
            counts[r.item_sid] = 0 if self.dropped(row_key(r)) else counts[r.item_sid] - 1
        ranked = sorted(((c, sid) for sid, c in counts.items() if c > 0), key=lambda t: (-t[0], t[1]))
        return [(sid, c) for c, sid in ranked[: self.k]], sum(counts.values())

    def for_row(self, r: Interaction, training: bool) -> list[str]:
        """The hint SIDs of a row's prompt, most frequent first (see `counted`)."""
        return [sid for sid, _ in self.counted(r, training)[0]]

    def line(self, r: Interaction, training: bool) -> str:
        """The text of a row's hints line: the SIDs back to back, or with `counts` each SID's count and the total."""
        hints, total = self.counted(r, training)
        if not self.counts:
            return "".join(sid for sid, _ in hints)
        return "".join(f"{sid} {c} " for sid, c in hints) + f"/ {total}"
