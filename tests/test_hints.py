"""data.successor_hints: SID-history prompts carry the last item's most frequent training successors."""
from collections import Counter
from dataclasses import replace

import pytest

from grporec.config import ConfigError, load_config
from grporec.data import datasets as D
from grporec.data.formats import Interaction
from grporec.data.hints import SuccessorHints, row_key
from grporec.data.load import load_split
from grporec.errors import SettingsError
from grporec.evaluate import eval_samples
from grporec.grpo.setup import build_rl_dataset
from grporec.metrics import transition_counts
from grporec.models.tiny import tokenizer_corpus
from grporec.sft import build_sft_dataset
from conftest import ROOT


def row(user: str, history: str, item: str) -> Interaction:
    ids = tuple(history)
    return Interaction(user, ids, ids, tuple(f"<{c}>" for c in ids), item, item, f"<{item}>")


# successors of a: b three times (u1, u2, u3), c twice (u4, u5), d once (u6); of x: y once
ROWS = [row("u1", "a", "b"), row("u2", "za", "b"), row("u3", "a", "b"), row("u4", "a", "c"), row("u5", "ya", "c"),
        row("u6", "a", "d"), row("u7", "x", "y")]


def test_hints_rank_successors_by_count_and_a_training_row_leaves_its_own_transition_out_once():
    hints = SuccessorHints(ROWS, k=2)
    new_user = row("new", "qa", "")
    assert hints.for_row(new_user, training=False) == ["<b>", "<c>"]  # counts 3, 2 (d's 1 is cut at k=2)
    # u4's own a -> c counted once less: b 3, c 1, d 1; the tie c/d is broken by SID
    assert hints.for_row(ROWS[3], training=True) == ["<b>", "<c>"]
    # u6's a -> d was its only occurrence: left out, so d is not in its hints even with k = 3
    assert SuccessorHints(ROWS, k=3).for_row(ROWS[5], training=True) == ["<b>", "<c>"]
    assert SuccessorHints(ROWS, k=3).for_row(ROWS[5], training=False) == ["<b>", "<c>", "<d>"]
    assert hints.for_row(ROWS[6], training=True) == []  # x -> y seen once: nothing left to hint
    assert hints.for_row(row("v", "", "b"), training=False) == []  # no history, no last item


def test_hint_drop_leaves_a_seeded_share_of_rows_without_their_transition_at_all():
    keys = [(f"u{i}", "a", "b") for i in range(4000)]
    for p in (0.25, 0.75):
        share = sum(SuccessorHints(ROWS, 2, p, seed=3).dropped(k) for k in keys) / len(keys)
        assert abs(share - p) < 0.03  # binomial SE at n = 4000 is <= .0079: 0.03 is ~4 SE
    first = [SuccessorHints(ROWS, 2, 0.5, seed=3).dropped(k) for k in keys]
    assert first == [SuccessorHints(ROWS, 2, 0.5, seed=3).dropped(k) for k in keys]  # deterministic
    assert first != [SuccessorHints(ROWS, 2, 0.5, seed=4).dropped(k) for k in keys]  # and the seed chooses
    assert not any(SuccessorHints(ROWS, 2, 0.0).dropped(k) for k in keys)
    everyone = SuccessorHints(ROWS, 2, 1.0)
    assert everyone.for_row(ROWS[0], training=True) == ["<c>", "<d>"]  # u1's a -> b removed entirely: b 0, c 2, d 1
    assert everyone.for_row(ROWS[0], training=False) == ["<b>", "<c>"]  # evaluation reads the full counts


def test_counted_hints_carry_each_count_and_the_last_items_total_after_leave_one_out():
    hints = SuccessorHints(ROWS, k=2, counts=True)
    assert hints.line(row("new", "qa", ""), training=False) == "<b> 3 <c> 2 / 6"  # a's successors b 3, c 2, d 1: 6
    assert hints.line(ROWS[3], training=True) == "<b> 3 <c> 1 / 5"  # u4's own a -> c counted once less: b 3, c 1, d 1
    assert hints.line(ROWS[6], training=True) == "/ 0"  # x -> y was x's only transition: nothing counted for u7
    assert SuccessorHints(ROWS, k=2).line(ROWS[3], training=True) == "<b><c>"  # without counts: the SIDs only
    assert SuccessorHints(ROWS, 2, 1.0, counts=True).line(ROWS[0], training=True) == "<c> 2 <d> 1 / 3"  # b's 3 dropped


def hinted(cfg, k=3, drop=0.0):
    return replace(cfg, data=replace(cfg.data, successor_hints=k, hint_drop=drop, prompt_text="compact", max_history=50))


def test_sft_and_grpo_prompts_carry_leave_one_out_hints_and_evaluation_the_full_counts(tiny_cfg, tiny_catalog):
    """On the synthetic data, every hint line is recomputed naively from the training rows' transition counts."""
    cfg = hinted(replace(tiny_cfg, sft=replace(tiny_cfg.sft, datasets=["sid_history", "sid_suffix"]),
                         rl=replace(tiny_cfg.rl, datasets=["sid_history"])))
    rows = load_split(cfg.data, "train", tiny_catalog)
    follows = transition_counts(rows)

    def naive(last, target, leave_out):
        c = Counter(follows.get(last, {}))
        c[target] -= leave_out
        return "".join(s for _, s in sorted((-n, s) for s, n in c.items() if n > 0)[:3])

    sft = build_sft_dataset(cfg, tiny_catalog).samples
    n_history = len(rows)
    for s, r in zip(sft[:n_history], rows):  # the sid_history part, in row order
        assert s.prompt == "### User Input: \n" + "".join(r.history_sids) + "\nhints: " + naive(
            r.history_sids[-1], r.item_sid, 1) + "\n\n### Response:\n"
    suffix = sft[n_history:]
    assert suffix and all(s.prompt.split("\nhints: ")[1] == naive(s.history_sids[-1], s.target_sid, 1) + "\n\n### Response:\n"
                          for s in suffix)
    rl = build_rl_dataset(cfg, tiny_catalog).samples
    assert [s.prompt for s in rl] == [s.prompt for s in sft[:n_history]]  # GRPO reads training rows as SFT does
    test_rows = load_split(cfg.data, "test", tiny_catalog)
    for s, r in zip(eval_samples(cfg, test_rows), test_rows):
        assert s.prompt.split("\nhints: ")[1] == naive(r.history_sids[-1], r.item_sid, 0) + "\n\n### Response:\n"
    assert "hints:" not in eval_samples(replace(cfg, data=replace(cfg.data, successor_hints=0)), test_rows)[0].prompt
    counted = replace(cfg, data=replace(cfg.data, hint_counts=True))
    for s, r in zip(eval_samples(counted, test_rows), test_rows):
        c = follows.get(r.history_sids[-1], {})  # naively: the top 3 with their counts, then the last item's total
        top = sorted(c.items(), key=lambda t: (-t[1], t[0]))[:3]
        line = "".join(f"{sid} {n} " for sid, n in top) + f"/ {sum(c.values())}"
        assert s.prompt.split("\nhints: ")[1] == line + "\n\n### Response:\n"


def test_dropped_rows_and_their_suffixes_lose_their_transition_together(tiny_cfg, tiny_catalog):
    cfg = hinted(replace(tiny_cfg, sft=replace(tiny_cfg.sft, datasets=["sid_suffix"])), k=50, drop=0.5)
    rows = load_split(cfg.data, "train", tiny_catalog)
    hints = SuccessorHints(rows, 50, 0.5, cfg.seed)
    by_key = {row_key(r): r for r in rows}
    samples = build_sft_dataset(cfg, tiny_catalog).samples
    lost = [s.target_sid not in s.prompt.split("\nhints: ")[1] for s in samples]
    # with k = 50 every counted successor is a hint: the target is missing exactly for dropped rows and for
    # transitions seen only once (left out by leave-one-out)
    follows = transition_counts(rows)
    expected = []
    for r in rows:
        h = r.history_sids[-50:]
        once = follows[h[-1]][r.item_sid] == 1
        expected += [hints.dropped(row_key(r)) or once] * (len(h) - 1)
    assert lost == expected and 0 < sum(lost) < len(lost)
    assert any(hints.dropped(k) for k in by_key) and not all(hints.dropped(k) for k in by_key)


def test_hints_refuse_prompts_they_do_not_fit_naming_the_key(tiny_cfg, tiny_catalog):
    with pytest.raises(SettingsError, match="'sid_markov' has no successor-hints prompt"):
        build_sft_dataset(hinted(replace(tiny_cfg, sft=replace(tiny_cfg.sft, datasets=["sid_history", "sid_markov"]))), tiny_catalog)
    with pytest.raises(SettingsError, match="'title_history' has no successor-hints prompt"):
        build_rl_dataset(hinted(replace(tiny_cfg, rl=replace(tiny_cfg.rl, datasets=["sid_history", "title_history"]))), tiny_catalog)
    minionerec = replace(tiny_cfg, data=replace(tiny_cfg.data, successor_hints=2, prompt_text="minionerec"))
    with pytest.raises(SettingsError, match="needs data.prompt_text: compact"):
        build_sft_dataset(minionerec, tiny_catalog)
    with pytest.raises(SettingsError, match="data.hint_counts=true .* data.successor_hints is 0"):
        build_sft_dataset(replace(tiny_cfg, data=replace(tiny_cfg.data, hint_counts=True)), tiny_catalog)
    with pytest.raises(ConfigError, match="data.hint_drop must be in \\[0, 1\\]"):
        load_config(ROOT / "configs" / "tiny.yaml", ["data.hint_drop=1.5"])
    with pytest.raises(ConfigError, match="data.successor_hints must be >= 0"):
        load_config(ROOT / "configs" / "tiny.yaml", ["data.successor_hints=-1"])


def test_the_tiny_tokenizer_learns_the_hints_line_only_when_hints_are_on(tiny_cfg):
    on = tokenizer_corpus(hinted(tiny_cfg))
    off = tokenizer_corpus(replace(tiny_cfg, data=replace(tiny_cfg.data, prompt_text="compact")))
    assert not any("\nhints: " in t for t in off) and on[: len(off)] == off  # without hints: the corpus as before
    assert len(on) > len(off) and all("\nhints: " in t for t in on[len(off):])
