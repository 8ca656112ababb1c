"""Prompt datasets for RL, SFT and evaluation, built from MiniOneRec-format records.

Every `Sample` carries its own prompt, completion text, target SID and history. Targets are
never looked up in a global prompt -> target table: the real data holds identical prompts with
different targets, and each must keep its own. Datasets are plain lists of samples; a
`MixedDataset` concatenates several, each with a configured (seeded) sample count.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from grporec.data import prompts as P
from grporec.data.catalog import Catalog
from grporec.data.formats import DataError, Interaction, first_description
from grporec.data.hints import SuccessorHints
from grporec.metrics import transition_counts


@dataclass(frozen=True)
class Sample:
    """One prompt and what should follow it.

    completion: the text the model should generate after the prompt (an SID or a title, then
        a newline); tokenizers append EOS after it.
    target_sid: the SID that counts as a hit (for SID -> title, the SID asked about).
    history_sids: the user's SID history, oldest first; empty for item-level tasks.
    """

    prompt: str
    completion: str
    target_sid: str
    history_sids: tuple[str, ...]
    task: str


class PromptDataset:
    """A list of samples with a name; index it, iterate it, take its length."""

    task = "samples"

    def __init__(self, samples: list[Sample]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]

    def __iter__(self):
        return iter(self.samples)


def _last(history: tuple[str, ...], max_history: int) -> tuple[str, ...]:
    return tuple(history[-max_history:]) if max_history > 0 else tuple(history)


# ---------------------------------------------------------------------------------------- RL


def _next_item(compact: bool, minionerec):
    """The next-item prompt builder: the compact one (every stage alike) or the stage's MiniOneRec wording."""
    return (lambda h: P.compact_prompt(P.compact_history_input(h))) if compact else minionerec


def _history_samples(rows: list[Interaction], max_history: int, prompt_of, task: str,
                     hints: SuccessorHints | None = None, training: bool = False) -> list[Sample]:
    """One sample per row: the prompt built from its (truncated) SID history, the next SID as target.

    With `hints` (data.successor_hints), the compact prompt with the last item's successors after the history;
    `training`: the rows are the counted training rows (each leaves its own transition out, grporec.data.hints)."""
    out = []
    for r in rows:
        h = _last(r.history_sids, max_history)
        prompt = prompt_of(h) if hints is None else P.compact_prompt(P.compact_hinted_input(h, hints.line(r, training)))
        out.append(Sample(prompt=prompt, completion=r.item_sid + "\n", target_sid=r.item_sid, history_sids=h, task=task))
    return out


class SidDataset(PromptDataset):
    """RL: SID history -> next SID (one sample per CSV row)."""

    task = "sid_history"

    def __init__(self, rows: list[Interaction], max_history: int = 10, compact: bool = False,
                 hints: SuccessorHints | None = None, training: bool = False):
        super().__init__(_history_samples(rows, max_history, _next_item(compact, lambda h: P.rl_prompt(P.sid_history_input(h))),
                                          self.task, hints, training))


def _item_questions(catalog: Catalog, item_feats: dict[str, dict], source: str,
                    compact: bool = False) -> list[tuple[str, str, str]]:
    """(kind, question input, SID) for every item: its title, and its description when it has one."""
    out = []
    for item_id, feat in item_feats.items():
        if item_id not in catalog.index_of_id:
            raise DataError(f"{source}, item {item_id}: not in the catalog (info file)")
        sid = catalog.sid(item_id)
        title = str(feat.get("title", "")).strip()
        if title:
            out.append(("title", P.compact_title_input(title) if compact else P.title_input(title), sid))
        desc = first_description(feat.get("description", ""))
        if desc and not compact:  # the compact prompts are for small models: titles only
            out.append(("description", P.description_input(desc), sid))
    return out


class Title2SidDataset(PromptDataset):
    """RL: title -> SID and description -> SID, for every item of item.json."""

    task = "title2sid"

    def __init__(self, catalog: Catalog, item_feats: dict[str, dict], source: str = "<item.json>", compact: bool = False):
        super().__init__([
            Sample(P.compact_prompt(q) if compact else P.rl_prompt(q), sid + "\n", sid, (), f"{self.task}:{kind}")
            for kind, q, sid in _item_questions(catalog, item_feats, source, compact)
        ])


def _seeded_rows(rows: list[Interaction], n: int, seed: int) -> list[Interaction]:
    """A seeded sample of n rows without replacement (all rows when n <= 0 or n >= len)."""
    if n <= 0 or n >= len(rows):
        return list(rows)
    return random.Random(seed).sample(list(rows), n)


class SeqTitle2SidDataset(PromptDataset):
    """RL: title history -> next SID, on a seeded sample of `n` rows."""

    task = "title_history"

    def __init__(self, rows: list[Interaction], n: int = 10000, seed: int = 42, max_history: int = 10):
        super().__init__([
            Sample(
                prompt=P.rl_prompt(P.title_history_input(_last(r.history_titles, max_history))),
                completion=r.item_sid + "\n",
                target_sid=r.item_sid,
                history_sids=_last(r.history_sids, max_history),
                task=self.task,
            )
            for r in _seeded_rows(rows, n, seed)
        ])


# -------------------------------------------------------------------------------- evaluation


class EvalSidDataset(PromptDataset):
    """Evaluation: the published next-item prompt (preamble + its own wording)."""

    task = "eval_sid_history"

    def __init__(self, rows: list[Interaction], max_history: int = 10, compact: bool = False,
                 hints: SuccessorHints | None = None):
        super().__init__(_history_samples(
            rows, max_history,
            _next_item(compact, lambda h: P.instruct_prompt(P.NEXT_ITEM_INSTRUCTION, P.eval_sid_history_input(h))), self.task,
            hints))


# ---------------------------------------------------------------------------------------- SFT


def _sft_next_item(h: tuple[str, ...]) -> str:
    """MiniOneRec's SFT next-item prompt: the preamble, then the RL wording of the history."""
    return P.instruct_prompt(P.NEXT_ITEM_INSTRUCTION, P.sid_history_input(h))


class SftSidDataset(PromptDataset):
    """SFT: SID history -> next SID, with the preamble."""

    task = "sft_sid_history"

    def __init__(self, rows: list[Interaction], max_history: int = 10, compact: bool = False,
                 hints: SuccessorHints | None = None, training: bool = False):
        super().__init__(_history_samples(rows, max_history, _next_item(compact, _sft_next_item), self.task, hints, training))


class SftSuffixDataset(PromptDataset):
    """SFT: every shorter suffix of each row's (truncated) history -> the same next SID.

    A row with history (h1, ..., hn) gives the samples (h2..hn), (h3..hn), ..., (hn) -> target; the
    full history is `SftSidDataset`'s. Predicting the next item from the most recent items alone,
    whatever came before, teaches the transition (last item -> next item) that carries over to a
    new user's history, where whole-history rows teach the row.
    """

    task = "sft_sid_suffix"

    def __init__(self, rows: list[Interaction], max_history: int = 10, compact: bool = False,
                 hints: SuccessorHints | None = None):
        # a suffix keeps its row's user, last item and target, so its hints leave out what the row's leave out
        suffixes = [Interaction(r.user_id, r.history_titles[-j:], r.history_ids[-j:], h[-j:], r.item_title, r.item_id, r.item_sid)
                    for r in rows for h in [_last(r.history_sids, max_history)] for j in range(len(h) - 1, 0, -1)]
        super().__init__(_history_samples(suffixes, max_history, _next_item(compact, _sft_next_item), self.task, hints, True))


class SftMarkovDataset(PromptDataset):
    """SFT: each row's (truncated) history -> a next SID drawn from the first-order Markov chain of the
    training rows, i.e. from the SIDs that followed the row's last history SID, in proportion to
    their counts (seeded; the row's own target is one of them).

    Beside `SftSidDataset`'s samples, the target a prompt is trained towards becomes half the row's
    own next item and half the chain's next-item distribution: a sampled distillation of the
    Markov teacher into the whole-history prompt. Whole-history rows alone teach the row (each
    history occurs once, with one target); these samples teach that whatever came before, what
    followed the last item in training is a likely next item, which is what a Markov chain counts
    and what the "seen" rows of an evaluation need.
    """

    task = "sft_sid_markov"

    def __init__(self, rows: list[Interaction], max_history: int = 10, compact: bool = False, seed: int = 42):
        follows = transition_counts(rows)
        rng = random.Random(seed)
        drawn = []
        for r in rows:
            if not r.history_sids:
                continue
            c = follows[r.history_sids[-1]]
            sid = rng.choices(list(c), weights=list(c.values()))[0]
            drawn.append(Interaction(r.user_id, r.history_titles, r.history_ids, r.history_sids, "", "", sid))
        super().__init__(_history_samples(drawn, max_history, _next_item(compact, _sft_next_item), self.task))


class SftTransitionDataset(PromptDataset):
    """SFT: one sample per distinct (last history SID -> next SID) transition of the training rows,
    with the (truncated) history of the latest row that has it.

    Beside `SftSidDataset`'s samples, a transition seen c times is trained c + 1 times an epoch
    instead of c: a transition seen once gets twice the repetition, a frequent one barely more.
    The last-item SFT model on Office reproduces every transition trained three times or more and
    about half of those trained once (`bench/experiments/seen_by_count.py`); these samples give the rare ones
    the repetition a model needs to remember them, without over-training the frequent ones.
    """

    task = "sft_sid_transition"

    def __init__(self, rows: list[Interaction], max_history: int = 10, compact: bool = False):
        latest: dict[tuple[str, str], Interaction] = {}
        for r in rows:
            if r.history_sids:
                latest[(r.history_sids[-1], r.item_sid)] = r
        super().__init__(_history_samples(list(latest.values()), max_history, _next_item(compact, _sft_next_item), self.task))


class SftTitle2SidDataset(PromptDataset):
    """SFT: title -> SID for every item."""

    task = "sft_title2sid"

    def __init__(self, catalog: Catalog, compact: bool = False):
        super().__init__([
            Sample(P.compact_prompt(P.compact_title_input(it.title)) if compact else
                   P.instruct_prompt(P.ITEM_ID_INSTRUCTION, P.title_input(it.title)), it.sid + "\n", it.sid, (), self.task)
            for it in catalog.items
            if it.title.strip()
        ])


class SftSid2TitleDataset(PromptDataset):
    """SFT: SID -> title for every item."""

    task = "sft_sid2title"

    def __init__(self, catalog: Catalog):
        super().__init__([
            Sample(P.instruct_prompt(P.ITEM_ID_INSTRUCTION, P.sid_to_title_input(it.sid)), it.title + "\n", it.sid, (), self.task)
            for it in catalog.items
            if it.title.strip()
        ])


class SftTitleHistoryDataset(PromptDataset):
    """SFT: title history -> next SID."""

    task = "sft_title_history"

    def __init__(self, rows: list[Interaction], max_history: int = 10):
        super().__init__([
            Sample(
                prompt=P.instruct_prompt(P.TITLE_HISTORY_INSTRUCTION, P.title_history_input(_last(r.history_titles, max_history))),
                completion=r.item_sid + "\n",
                target_sid=r.item_sid,
                history_sids=_last(r.history_sids, max_history),
                task=self.task,
            )
            for r in rows
        ])


# -------------------------------------------------------------------------------------- mixing


class MixedDataset(PromptDataset):
    """Concatenation of datasets, each cut to a seeded sample of `count` (None or <= 0: all)."""

    task = "mixed"

    def __init__(self, parts: list[tuple[PromptDataset, int | None]], seed: int = 42):
        samples: list[Sample] = []
        for i, (ds, count) in enumerate(parts):
            picked = list(ds.samples)
            if count is not None and 0 < count < len(picked):
                picked = random.Random(seed + i).sample(picked, count)
            samples.extend(picked)
        super().__init__(samples)
        self.sizes = [(type(ds).__name__, n) for (ds, _), n in zip(parts, self._part_sizes(parts))]

    @staticmethod
    def _part_sizes(parts):
        return [len(ds) if c is None or c <= 0 else min(c, len(ds)) for ds, c in parts]
