"""data.hold_back: each user's latest training rows are kept from SFT and are GRPO's only history prompts."""
from collections import Counter
from dataclasses import replace

import pytest

from grporec.config import ConfigError, load_config
from grporec.data.formats import Interaction
from grporec.data.load import hold_back, load_split, training_rows
from grporec.errors import SettingsError
from grporec.grpo.setup import build_rl_dataset
from grporec.sft import build_sft_dataset
from conftest import ROOT


def row(user: str, history: str, item: str) -> Interaction:
    ids = tuple(history)
    return Interaction(user, ids, ids, tuple(f"<{c}>" for c in ids), item, item, f"<{item}>")


# file order is not time order: u1's rows come shuffled, u3 has two rows of the same length
ROWS = [row("u1", "ab", "c"), row("u2", "x", "y"), row("u1", "a", "b"), row("u1", "abc", "d"),
        row("u3", "pq", "r"), row("u3", "pq", "s")]


def test_hold_back_takes_each_users_longest_histories_and_keeps_file_order():
    """n = 1: u1's 3-item history (row 3), u2's only row (row 1), and of u3's tied rows the later (row 5).
    n = 2: also u1's 2-item row (row 0) and u3's other row (row 4); u2 has only one row to give."""
    kept, held = hold_back(ROWS, 1)
    assert held == [ROWS[1], ROWS[3], ROWS[5]] and kept == [ROWS[0], ROWS[2], ROWS[4]]
    kept, held = hold_back(ROWS, 2)
    assert held == [ROWS[0], ROWS[1], ROWS[3], ROWS[4], ROWS[5]] and kept == [ROWS[2]]
    assert hold_back(ROWS, 0) == (ROWS, [])


def pairs(samples) -> Counter:
    return Counter((s.history_sids, s.target_sid) for s in samples)


def test_sft_trains_without_the_held_rows_and_grpo_prompts_are_exactly_them(tiny_cfg, tiny_catalog):
    """On the synthetic data: the SFT history samples and the GRPO prompts partition the training rows'
    (history, target) pairs, and each GRPO prompt is its user's longest history (checked naively)."""
    cfg = replace(tiny_cfg, data=replace(tiny_cfg.data, hold_back=1, max_history=50))
    cfg = replace(cfg, sft=replace(cfg.sft, datasets=["sid_history"]), rl=replace(cfg.rl, datasets=["sid_history"]))
    rows = load_split(cfg.data, "train", tiny_catalog)
    sft, rl = build_sft_dataset(cfg, tiny_catalog), build_rl_dataset(cfg, tiny_catalog)
    users = {r.user_id for r in rows}
    assert len(rl.samples) == len(users) and len(sft.samples) == len(rows) - len(users)
    assert pairs(sft.samples) + pairs(rl.samples) == Counter((r.history_sids, r.item_sid) for r in rows)  # no history cut at 50
    longest = {}
    for r in rows:
        longest[r.user_id] = max(longest.get(r.user_id, 0), len(r.history_sids))
    assert sorted(len(s.history_sids) for s in rl.samples) == sorted(longest.values())
    everything = build_rl_dataset(replace(cfg, data=replace(cfg.data, hold_back=0)), tiny_catalog)
    assert pairs(everything.samples) == pairs(sft.samples) + pairs(rl.samples)  # 0: every row, as before


def test_holding_back_every_row_is_refused_for_sft_naming_the_key(tiny_cfg, tiny_catalog):
    cfg = replace(tiny_cfg, data=replace(tiny_cfg.data, hold_back=10_000))
    with pytest.raises(SettingsError, match="data.hold_back=10000 holds back every row"):
        training_rows(cfg.data, tiny_catalog, "sft")
    assert len(training_rows(cfg.data, tiny_catalog, "rl")) == len(load_split(cfg.data, "train", tiny_catalog))


def test_negative_hold_back_is_a_config_error():
    with pytest.raises(ConfigError, match="data.hold_back must be >= 0"):
        load_config(ROOT / "configs" / "tiny.yaml", ["data.hold_back=-1"])
