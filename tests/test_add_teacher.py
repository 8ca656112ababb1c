"""Teacher injection (`inject_labels`, `rl.add_teacher`): each group also gets the teacher's favourite items."""
import math

import pytest
import torch

from grporec import loop
from grporec.decode import SidTrie, beam_search, inject_labels, inject_targets, left_pad
from grporec.errors import SettingsError
from conftest import ENV, tiny_loop_cfg
from test_add_gt import SEQS
from test_decode import PAD, PROMPTS, tiny_lm


def test_labels_fill_each_group_from_its_lowest_ranked_free_row_up():
    """Three prompts, G = 3, the same model (5 labels, so each group misses two: m_b, n_b). Group 0
    first gets its target m0 injected into row 2; then [l00, n0]: l00 is held (its row kept), n0
    takes row 1, above the target. Group 1: [m1, n1] take rows 2 and 1. Group 2: [-1, n2] with
    keep = its row-2 label: n2 may not overwrite row 2, so it takes row 1."""
    G = 3
    trie = SidTrie.build(SEQS, PAD, names=[f"s{i}" for i in range(5)])
    r = beam_search(tiny_lm(5), *left_pad(PROMPTS, PAD), trie, G)
    labels = r.labels.view(3, G).tolist()
    (m0, n0), (m1, n1), (_, n2) = ([i for i in range(5) if i not in labels[b]] for b in range(3))
    r = inject_targets(r, torch.tensor([m0, -1, -1]), trie)
    out = inject_labels(r, torch.tensor([[labels[0][0], n0], [m1, n1], [-1, n2]]), trie,
                        keep=torch.tensor([m0, -1, labels[2][2]]))
    assert out.labels.view(3, G).tolist() == [[labels[0][0], n0, m0], [labels[1][0], n1, m1], [labels[2][0], n2, labels[2][2]]]
    assert out.injected.view(3, G).tolist() == [[False, True, True], [False, True, True], [False, True, False]]
    ids, mask = trie.path(torch.tensor([n0]))
    assert out.completion_ids[1].tolist() == ids[0].tolist() and out.completion_mask[1].tolist() == mask[0].tolist()
    assert out.sids[1] == f"s{n0}" and bool(out.valid[1])
    assert math.isnan(out.scores[1].item()) and torch.isnan(out.token_logps[1]).all()  # never decoded
    assert torch.equal(out.completion_ids[[0, 3, 6, 8]], r.completion_ids[[0, 3, 6, 8]])  # rows left alone
    assert inject_labels(out, torch.tensor([[n0, -1], [m1, n1], [-1, -1]]), trie) is out  # all held: unchanged
    with pytest.raises(ValueError, match="cannot inject 3 labels into groups of 3"):
        inject_labels(r, torch.full((3, 3), -1), trie)


def test_a_label_held_twice_keeps_its_first_row_and_frees_the_other():
    """Sampling can repeat an item: in group [x, x, y] with labels [x, z], x is held (its first row,
    0, is kept) and z takes the lowest-ranked free row, 2 (y is not wanted); with keep = y, row 2
    is kept and z takes row 1, x's duplicate."""
    trie = SidTrie.build(SEQS, PAD, names=[f"s{i}" for i in range(5)])
    r = beam_search(tiny_lm(5), *left_pad(PROMPTS[:1], PAD), trie, 3)
    x, y = r.labels.tolist()[0], r.labels.tolist()[2]
    z = next(i for i in range(5) if i not in r.labels.tolist())
    dup = r.select(torch.tensor([0, 0, 2]), 3)  # [x, x, y]
    assert inject_labels(dup, torch.tensor([[x, z]]), trie).labels.tolist() == [x, x, z]
    assert inject_labels(dup, torch.tensor([[x, z]]), trie, keep=torch.tensor([y])).labels.tolist() == [x, z, y]


def test_inject_targets_is_inject_labels_with_one_column():
    """The target injection is the K = 1 case: the same rollout, field by field."""
    G = 3
    trie = SidTrie.build(SEQS, PAD, names=[f"s{i}" for i in range(5)])
    r = beam_search(tiny_lm(5), *left_pad(PROMPTS, PAD), trie, G)
    targets = torch.tensor([next(i for i in range(5) if i not in r.labels.view(3, G)[b].tolist()) for b in range(3)])
    a, b = inject_targets(r, targets, trie), inject_labels(r, targets.unsqueeze(1), trie)
    assert a.labels.tolist() == b.labels.tolist() and a.injected.tolist() == b.injected.tolist()
    assert torch.equal(a.completion_ids, b.completion_ids) and a.sids == b.sids and a.labels.view(3, G)[:, 2].tolist() == targets.tolist()


def test_teacher_items_are_the_teachers_top_k_per_history():
    """grpo.setup.teacher_items: the k largest of teacher.sid_probs per history, in order, and -1
    for a prompt without a history (a title prompt)."""
    from grporec.data.datasets import Sample
    from grporec.grpo.setup import teacher_items

    class Fixed:  # a teacher with known probabilities over 5 SIDs
        def sid_probs(self, histories):
            table = {("a",): [.1, .5, .05, .3, .05], ("b", "c"): [.6, .0, .1, .1, .2]}
            return torch.tensor([table[h] for h in histories])

    samples = [Sample("p", "x", "x", ("a",), "t"), Sample("p", "x", "x", (), "t"), Sample("p", "x", "x", ("b", "c"), "t")]
    assert teacher_items(Fixed(), 2)(samples).tolist() == [[1, 3], [-1, -1], [0, 4]]


@pytest.fixture(scope="module")
def sasrec_dir(tiny_cfg, tmp_path_factory):
    """An untrained (seeded) SASRec over the tiny catalog: the teacher only has to be some fixed model."""
    from grporec.data.load import load_data_catalog
    from grporec.models.sasrec import SASRec, SasrecShape

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("sasrec") / "model"
    SASRec(SasrecShape(len(load_data_catalog(tiny_cfg.data).items), hidden=8, blocks=1, dropout=0.0)).save(out)
    return out


def test_loop_puts_the_teachers_top_items_in_every_group(tiny_cfg, tiny_model_dir, sasrec_dir, tmp_path, monkeypatch):
    """rl.add_teacher=2 with add_gt: in every group of every step the teacher's top 2 SIDs for the
    prompt's history are present and the target too; the same run without injection decodes the
    same rows at step 1 (same seeds, same weights), and injection swaps some for the teacher's
    most likely items, so its mean teacher reward there is higher."""
    from grporec.grpo import rollout as R

    seen = []
    real = R.roll_out

    def spy(policy, fmt, trie, samples, cfg, label_of, step, first, env, teacher_top=None):
        chunks = real(policy, fmt, trie, samples, cfg, label_of, step, first, env, teacher_top)
        seen.append((chunks, teacher_top))
        return chunks

    monkeypatch.setattr(loop, "roll_out", spy)
    common = ("train.max_steps=2", "rl.add_gt=true", "reward.names=[rule,teacher]", f"reward.sasrec_path={sasrec_dir}",
              "rl.datasets=[sid_history]")
    with_teacher = loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "t", *common, "rl.add_teacher=2"), ENV)["history"]
    G, checked = None, 0
    for chunks, top in seen:
        assert top is not None
        for ch in chunks:
            G = ch.rollout.group_size
            want = top(ch.samples)  # [B, 2]
            for b in range(ch.rollout.num_prompts):
                group = ch.rollout.labels[b * G:(b + 1) * G].tolist()
                assert set(want[b].tolist()) <= set(group) and int(ch.targets[b]) in group
                checked += 1
    cfg = tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "t", *common)
    assert checked == 2 * cfg.train.prompts_per_step and all(m["other_injected"] > 0 for m in with_teacher)
    seen.clear()
    plain = loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "p", *common), ENV)["history"]
    assert seen[0][1] is None and plain[0]["other_injected"] == 0
    assert with_teacher[0]["rewards/teacher"] > plain[0]["rewards/teacher"]  # step 1: same decoded rows, best ones swapped in


@pytest.mark.parametrize("overrides, says", [
    (("rl.add_teacher=1", "reward.names=[rule]"), "reward.names must include teacher"),
    (("rl.add_teacher=3", "rl.add_gt=true", "rl.num_generations=4", "reward.names=[rule,teacher]"), "keep at least one decoded"),
    (("rl.add_teacher=-1",), "rl.add_teacher must be >= 0"),
])
def test_impossible_teacher_injection_is_refused_before_training(tiny_cfg, tiny_model_dir, sasrec_dir, tmp_path, overrides, says):
    with pytest.raises((SettingsError, ValueError), match=says):
        loop.train(tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path / "r", f"reward.sasrec_path={sasrec_dir}", *overrides), ENV)
    assert not (tmp_path / "r" / "checkpoints").exists()
