"""Ground-truth injection (`inject_targets`, `rl.add_gt`): each group's own target, token ids from the trie."""
import math

import torch

from grporec.decode import SidTrie, beam_search, inject_targets, left_pad
from test_decode import EOS, NEWLINE, PAD, PROMPTS, tiny_lm
from conftest import ENV, tiny_loop_cfg
from grporec import loop

SEQS = [[10, 20, 30, NEWLINE, EOS], [10, 20, 31, 41, NEWLINE, EOS], [11, 21, 30, NEWLINE, EOS],
        [11, 22, 33, 44, NEWLINE, EOS], [12, 22, 30, NEWLINE, EOS]]


def test_trie_paths_give_each_label_its_tokens_and_length():
    t = SidTrie.build(SEQS, PAD, names=[f"s{i}" for i in range(5)])
    ids, mask = t.path(torch.tensor([1, 0]))
    assert ids.tolist() == [[10, 20, 31, 41, NEWLINE, EOS], [10, 20, 30, NEWLINE, EOS, PAD]]
    assert mask.tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]]


def test_pad_equal_to_eos_keeps_the_eos_in_the_mask():
    # Qwen-style tokenizers often pad with EOS: the length, not a search for pad_id, ends the path
    t = SidTrie.build([[10, 20, EOS], [10, 21, 31, EOS]], pad_id=EOS)
    assert t.path(torch.tensor([0]))[1].tolist() == [[1, 1, 1, 0]]


def test_only_groups_that_miss_their_own_target_get_it_in_their_last_row():
    """Three prompts, G = 3, the same model: prompt 0's target is in its beams (left alone), prompt 1's
    is not (its last row becomes the target), prompt 2 has no target (-1, left alone). Prompts 0 and
    1 would share a target in MiniOneRec's batch-level version; here each group uses its own."""
    G = 3
    trie = SidTrie.build(SEQS, PAD, names=[f"s{i}" for i in range(5)])
    r = beam_search(tiny_lm(5), *left_pad(PROMPTS, PAD), trie, G)
    labels = r.labels.view(3, G).tolist()
    in_group0 = labels[0][1]
    missing1 = next(i for i in range(5) if i not in labels[1])
    out = inject_targets(r, torch.tensor([in_group0, missing1, -1]), trie)
    assert out.injected.tolist() == [False] * 3 + [False, False, True] + [False] * 3
    assert out.labels.view(3, G).tolist() == [labels[0], labels[1][:2] + [missing1], labels[2]]
    ids, mask = trie.path(torch.tensor([missing1]))
    assert out.completion_ids[5].tolist() == ids[0].tolist() and out.completion_mask[5].tolist() == mask[0].tolist()
    assert out.sids[5] == f"s{missing1}" and bool(out.valid[5])
    assert math.isnan(out.scores[5].item()) and torch.isnan(out.token_logps[5]).all()  # never decoded
    keep = [i for i in range(9) if i != 5]
    assert torch.equal(out.completion_ids[keep], r.completion_ids[keep]) and torch.equal(out.scores[keep], r.scores[keep])
    assert not r.injected.any()  # the input rollout is not modified
    assert inject_targets(r, torch.tensor([in_group0, labels[1][0], -1]), trie) is r  # nothing missing: unchanged


def test_loop_with_add_gt_has_a_hit_and_a_contrast_in_every_group(tiny_cfg, tiny_model_dir, tmp_path):
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "run", "train.max_steps=2", "rl.add_gt=true",
                        "reward.reward_type=rule")
    h = loop.train(cfg, ENV)["history"]
    G = cfg.rl.num_generations
    for m in h:
        assert m["frac_reward_zero_std"] == 0.0  # every group holds exactly one hit among distinct beams
        assert m["rewards/rule"] == 1.0 / G  # one hit per group of G: mean reward 1/G
        assert m["frac_injected"] == m["frac_groups_without_hit"]
    assert h[0]["frac_injected"] > 0  # the tiny model misses some targets, so the test exercises injection
