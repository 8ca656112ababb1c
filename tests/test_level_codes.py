"""SID level codes: parsed once from the catalog, carried by the trie and every rollout (also
through ground-truth injection and `select`), and used by the prefix reward and sibling advantages."""
import random
import re

import pytest
import torch

from grporec.data.formats import DataError, sid_codes
from grporec.decode import SidTrie, beam_search, build_catalog_trie, inject_targets, left_pad, sample
from grporec.models.format import build_format
from grporec.models.policy import load_policy
from grporec.rewards import RewardInputs, prefix_reward
from test_add_gt import SEQS
from test_decode import PAD, PROMPTS, tiny_lm

CODES = torch.tensor([[0, 0, 0], [0, 0, 1], [1, 1, 0], [1, 2, 3], [2, 2, 0]])  # one row per SEQS label


def test_sid_codes_by_hand():
    # <a_12><b_3><c_45> -> 12, 3, 45; a 2-level SID is padded with -1 to the longest (3 levels)
    assert sid_codes(["<a_12><b_3><c_45>", "<a_7><b_0>"]).tolist() == [[12, 3, 45], [7, 0, -1]]
    with pytest.raises(DataError, match="malformed SID 'a_1'"):
        sid_codes(["<a_1>", "a_1"])


def test_rollouts_carry_their_labels_codes_through_injection_and_select():
    G = 3
    trie = SidTrie.build(SEQS, PAD, names=[f"s{i}" for i in range(5)], codes=CODES)
    for r in (beam_search(tiny_lm(5), *left_pad(PROMPTS, PAD), trie, G),
              sample(tiny_lm(5), *left_pad(PROMPTS, PAD), trie, G, 1.0, torch.Generator().manual_seed(0))):
        assert torch.equal(r.level_codes, CODES[r.labels])  # every row valid here: its label's row
        missing = next(i for i in range(5) if i not in r.labels[G:2 * G].tolist())
        out = inject_targets(r, torch.tensor([-1, missing, -1]), trie)
        assert out.level_codes[2 * G - 1].tolist() == CODES[missing].tolist()  # the injected row: the target's codes
        assert torch.equal(out.level_codes[:2 * G - 1], r.level_codes[:2 * G - 1])
        assert torch.equal(out.select(torch.tensor([2, 0]), 1).level_codes, r.level_codes[[2, 0]])


def test_invalid_rows_have_codes_minus_one():
    # 2 catalog items, G = 3: the third beam of each prompt cannot be filled
    trie = SidTrie.build(SEQS[:2], PAD, codes=CODES[:2])
    r = beam_search(tiny_lm(5), *left_pad(PROMPTS, PAD), trie, 3)
    assert not r.valid[2] and r.level_codes[2].tolist() == [-1, -1, -1]
    assert trie.codes_of(torch.tensor([1, -1])).tolist() == [[0, 0, 1], [-1, -1, -1]]


def test_catalog_trie_codes_are_the_sids_levels(tiny_model_dir, tiny_catalog):
    _, tok = load_policy(tiny_model_dir, "float32", "cpu")
    trie = build_catalog_trie(build_format(tok), tiny_catalog.sids)
    sid = tiny_catalog.sids[3]  # e.g. <a_1><b_4><c_2>: the integers between "_" and ">"
    assert trie.codes[3].tolist() == [int(c) for c in re.findall(r"_(\d+)>", sid)]


def test_prefix_reward_from_codes_equals_prefix_reward_from_strings():
    """The loop's code path against the string path, on random 3-level SIDs with shared prefixes,
    invalid completions and a 2-level target."""
    rng = random.Random(0)
    sids = sorted({f"<a_{rng.randrange(3)}><b_{rng.randrange(3)}><c_{rng.randrange(3)}>" for _ in range(40)})
    codes = sid_codes(sids + ["<a_1><b_2>"])
    B, G = 6, 5
    targets = list(range(B - 1)) + [len(sids)]  # the last target is the 2-level one
    labels = [rng.choice([-1] + list(range(len(sids)))) for _ in range(B * G)]
    x_str = RewardInputs([None if i < 0 else sids[i] for i in labels], [(sids + ["<a_1><b_2>"])[t] for t in targets], G,
                         torch.arange(G).repeat(B))
    lab = torch.tensor(labels)
    x_codes = RewardInputs(x_str.completions, x_str.targets, G, x_str.ranks,
                           level_codes=torch.where((lab >= 0).unsqueeze(1), codes[lab.clamp(min=0)], -1),
                           target_codes=codes[torch.tensor(targets)])
    expected = prefix_reward(x_str)
    assert (expected > 0).any() and (expected < 1).any() and (expected == 0).any()  # every case occurs
    torch.testing.assert_close(prefix_reward(x_codes), expected)


def test_reward_inputs_check_code_shapes():
    with pytest.raises(ValueError, match="come together"):
        RewardInputs(["<a_1>"], ["<a_1>"], 1, torch.zeros(1), level_codes=torch.zeros(1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must be \[B\*G, K\] and \[B, K\]"):
        RewardInputs(["<a_1>", "<a_2>"], ["<a_1>"], 2, torch.zeros(2), level_codes=torch.zeros(1, 1, dtype=torch.long),
                     target_codes=torch.zeros(1, 1, dtype=torch.long))


def test_sibling_advantages_need_one_sid_length():
    from grporec.grpo.rollout import check_one_sid_length

    check_one_sid_length(sid_codes(["<a_1><b_2>", "<a_3><b_0>"]))  # both 2 levels: fine
    with pytest.raises(ValueError, match=r"needs SIDs of one length; the catalog has lengths \[1, 2\]"):
        check_one_sid_length(sid_codes(["<a_1><b_2>", "<a_1>"]))
