"""Reward functions against hand-computed values."""
import math

import numpy as np
import pytest
import torch

from grporec.data.catalog import Catalog
from grporec.data.formats import ItemInfo
from grporec.rewards import REWARD_TYPES, RewardInputs, RewardSet, SidEmbeddings, ndcg_weights, resolve_rewards
from grporec.rewards.rule import ndcg_rule_reward, rule_reward
from grporec.rewards.semantic import semantic_reward


def inputs(completions, targets, G, histories=None):
    return RewardInputs(completions, targets, G, torch.arange(G).repeat(len(targets)), histories)


def test_rule_reward_strips_newline_quotes_spaces():
    x = inputs(['<a_1><b_2>\n', '"<a_1><b_2>"', ' <a_1><b_3> ', None], ["<a_1><b_2>"], 4)
    assert rule_reward(x).tolist() == [1.0, 1.0, 0.0, 0.0]  # invalid (None) -> 0, no KeyError


def test_ndcg_weights_for_g16():
    w = ndcg_weights(16)
    # sum_{j<16} 1/log2(j+2) = 1 + 0.63093 + 0.5 + 0.43068 + ... = 6.10408; w_0 = -1/6.10408 = -0.16382
    assert [round(v, 4) for v in w[:3].tolist()] == [-0.1638, -0.1033, -0.0819]
    torch.testing.assert_close(w.sum(), torch.tensor(-1.0))
    assert (w.diff() > 0).all()  # later ranks are penalised less
    # G = 2: 1/log2(2) = 1, 1/log2(3) = 0.63093; w = -[1, 0.63093] / 1.63093 = [-0.61315, -0.38685]
    torch.testing.assert_close(ndcg_weights(2), torch.tensor([-1 / (1 + 1 / math.log2(3)), -(1 / math.log2(3)) / (1 + 1 / math.log2(3))]))


def test_ndcg_rule_hits_zero_misses_weighted_no_hit_group_zero():
    G = 4
    w = ndcg_weights(G)
    # group 0: hit at rank 1 -> hits 0, misses at ranks 0, 2, 3 get w_0, w_2, w_3
    # group 1: no hit -> all 0 (including the invalid beam)
    x = inputs(["a", "t", "b", "c", "x", None, "y", "z"], ["t", "q"], G)
    r = ndcg_rule_reward(x)
    torch.testing.assert_close(r, torch.tensor([w[0], 0.0, w[2], w[3], 0, 0, 0, 0]))


def test_ranking_reward_type_is_rule_plus_ndcg():
    assert REWARD_TYPES["ranking"] == [("rule", 1.0), ("ndcg_rule", 1.0)]
    x = inputs(["a", "t", "b", None], ["t"], 4)
    total, m = RewardSet(resolve_rewards("ranking"))(x)
    w = ndcg_weights(4)
    torch.testing.assert_close(total, torch.tensor([w[0], 1.0, w[2], w[3]]))
    assert m["rewards/rule"] == pytest.approx(0.25)
    assert m["rewards/ndcg_rule"] == pytest.approx((w[0] + w[2] + w[3]).item() / 4)  # mean over the 4 rows


def test_explicit_names_and_weights():
    x = inputs(["t", "a"], ["t"], 2)
    total, m = RewardSet(resolve_rewards("rule", ["rule", "ndcg_rule"], [2.0, 0.5]))(x)
    # rule = [1, 0]; ndcg_rule = [0, w_1] with w_1 = -0.38685 (G = 2); total = 2 * rule + 0.5 * ndcg
    torch.testing.assert_close(total, torch.tensor([2.0, 0.5 * ndcg_weights(2)[1].item()]))
    with pytest.raises(ValueError, match="unknown reward 'bleu'"):
        resolve_rewards("rule", ["bleu"])
    with pytest.raises(ValueError, match="2 values for 1 names"):
        resolve_rewards("rule", ["rule"], [1.0, 2.0])
    with pytest.raises(ValueError, match="unknown 'exact'"):
        resolve_rewards("exact")
    with pytest.raises(ValueError, match="needs reward.semantic_embeddings"):
        RewardSet([("semantic", 1.0)])


def _catalog():
    return Catalog.from_items([ItemInfo("<a_1>", "x", "0"), ItemInfo("<a_2>", "y", "1"), ItemInfo("<a_3>", "z", "2")])


def test_semantic_reward_on_known_embeddings(tmp_path):
    # items 0, 1, 2 -> vectors [1, 0], [1, 1], [0, 2]; cos(0, 1) = 1/sqrt(2); cos(0, 2) = 0; cos(1, 2) = 1/sqrt(2)
    path = tmp_path / "emb.npy"
    np.save(path, np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]], dtype=np.float32))
    emb = SidEmbeddings.load(path, _catalog())
    x = inputs(["<a_1>", "<a_2>", "<a_3>", None, "<a_9>"], ["<a_1>"], 5)
    torch.testing.assert_close(semantic_reward(x, emb), torch.tensor([1.0, 2 ** -0.5, 0.0, 0.0, 0.0]))


def test_semantic_embeddings_shape_checked(tmp_path):
    path = tmp_path / "bad.npy"
    np.save(path, np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"bad\.npy: embedding matrix has shape \(2, 4\) but the catalog has 3 items"):
        SidEmbeddings.load(path, _catalog())
    with pytest.raises(FileNotFoundError, match="semantic embedding file not found"):
        SidEmbeddings.load(tmp_path / "none.npy", _catalog())


def test_reward_inputs_layout_checked():
    with pytest.raises(ValueError, match="3 completions and 3 ranks for 2 targets x G=2"):
        RewardInputs(["a", "b", "c"], ["a", "b"], 2, torch.arange(3))


def test_prefix_reward_credits_shared_leading_levels():
    from grporec.rewards.rule import prefix_reward

    t = "<a_1><b_2><c_3>"
    x = inputs(["<a_1><b_2><c_3>\n", "<a_1><b_2><c_4>", "<a_1><b_5><c_3>", "<a_9><b_2><c_3>", None], [t], 5)
    # 3 levels shared -> 3/3; the first two -> 2/3; only the first -> 1/3 (c matches but b does not:
    # a prefix, not a bag of levels); a different first level -> 0; invalid -> 0
    torch.testing.assert_close(prefix_reward(x), torch.tensor([1.0, 2 / 3, 1 / 3, 0.0, 0.0]))
    assert dict(REWARD_TYPES)["ranking_prefix"] == [("rule", 1.0), ("ndcg_rule", 1.0), ("prefix", 1.0)]
    total, metrics = RewardSet(resolve_rewards("prefix"))(x)
    torch.testing.assert_close(total, prefix_reward(x))
    assert metrics["rewards/prefix"] == pytest.approx((1 + 2 / 3 + 1 / 3) / 5)


def test_markov_reward_is_the_teachers_transition_probability():
    """Train: after A came B twice and C once; after D came B once. With min_count 1 a completion
    after history (..., A) scores count(A -> x) / 3: B 2/3, C 1/3, D 0; after (D,) B scores 1/1;
    no history scores 0. With min_count 2, D's single transition is too little evidence: 0."""
    from grporec.data.formats import Interaction
    from grporec.rewards.cf import MarkovTeacher, markov_reward

    def row(last, target):
        return Interaction("u", ("t",), ("1",), (last,), "t", "2", target)

    train = [row("A", "B"), row("A", "B"), row("A", "C"), row("D", "B")]
    x = inputs(["B", "C", "D", "B", None, "B"], ["B", "B", "B"], 2, histories=[("Z", "A"), ("D",), ()])
    torch.testing.assert_close(markov_reward(x, MarkovTeacher(train)), torch.tensor([2 / 3, 1 / 3, 0.0, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(markov_reward(x, MarkovTeacher(train, min_count=2)), torch.tensor([2 / 3, 1 / 3, 0.0, 0.0, 0.0, 0.0]))


def test_build_rewards_binds_a_resource_reward_as_a_plain_function(tiny_cfg):
    """grpo.setup.build_rewards is the one place that loads a reward's resource: with
    reward.names=[rule, markov] the set's markov function is the teacher of the run's training
    split (the same values as markov_reward with a MarkovTeacher built here), weighted as named;
    a resource reward the set is not handed is refused with what it needs."""
    from dataclasses import replace

    from grporec.data.load import load_data_catalog, load_split
    from grporec.grpo.setup import build_rewards
    from grporec.rewards.cf import MarkovTeacher, markov_reward

    cfg = replace(tiny_cfg, reward=replace(tiny_cfg.reward, names=["rule", "markov"], weights=[1.0, 2.0]))
    catalog = load_data_catalog(cfg.data)
    train = load_split(cfg.data, "train", catalog)
    rows = train[:3]
    sids = list(catalog.sids)
    completions = [rows[0].item_sid, sids[0], rows[1].item_sid, sids[1], rows[2].item_sid, None]  # G = 2: hit, other
    x = inputs(completions, [r.item_sid for r in rows], 2, histories=[r.history_sids for r in rows])
    total, metrics = build_rewards(cfg, catalog, torch.device("cpu"))(x)
    expected_markov = markov_reward(x, MarkovTeacher(train, cfg.reward.markov_min_count))
    assert float(expected_markov.max()) > 0  # the check below compares something non-trivial
    torch.testing.assert_close(total, rule_reward(x) + 2.0 * expected_markov)
    assert metrics["rewards/markov"] == pytest.approx(expected_markov.mean().item())
    with pytest.raises(ValueError, match="markov reward needs the training split"):
        RewardSet([("markov", 1.0)])


def test_teacher_reward_is_counts_smoothed_with_sasrec():
    """Train: after A came B twice and C once. With a = 2, after history (D, A) a completion s scores
    (c(A -> s) + 2 p_SASRec(s | D, A)) / (3 + 2): B (2 + 2 p_B) / 5, C (1 + 2 p_C) / 5, D 2 p_D / 5;
    after (B,), never followed in training, it is SASRec's probability alone; no history, or an
    invalid completion, scores 0. Each history's teacher distribution sums to 1."""
    from grporec.data.formats import Interaction
    from grporec.models.sasrec import SASRec, SasrecShape
    from grporec.rewards.cf import CountsSasrecTeacher, SasrecScorer, teacher_reward

    A, B, C, D = (f"<a_{k}><b_0>" for k in range(4))
    cat = Catalog.from_items([ItemInfo(s, f"t{k}", str(k)) for k, s in enumerate((A, B, C, D))])

    def row(last, target):
        return Interaction("u", ("t",), ("1",), (last,), "t", "2", target)

    torch.manual_seed(0)
    scorer = SasrecScorer(SASRec(SasrecShape(4, hidden=16, blocks=1, dropout=0.0)), cat)
    teacher = CountsSasrecTeacher(scorer, [row(A, B), row(A, B), row(A, C)], a=2.0)
    p = scorer.sid_probs([(D, A), (B,)])  # the naive reference: SASRec's own probabilities
    j = scorer.sid_index
    x = inputs([B, C, D, None, A, C, B, B], [B, B, B, B], 2,
               histories=[(D, A), (D, A), (B,), ()])
    expected = torch.tensor([(2 + 2 * p[0, j[B]]) / 5, (1 + 2 * p[0, j[C]]) / 5, 2 * p[0, j[D]] / 5, 0.0,
                             p[1, j[A]], p[1, j[C]], 0.0, 0.0])
    torch.testing.assert_close(teacher_reward(x, teacher), expected)
    torch.testing.assert_close(teacher.sid_probs([(D, A), (B,)]).sum(1), torch.ones(2))
    with pytest.raises(ValueError, match="teacher_a must be > 0"):
        CountsSasrecTeacher(scorer, [], a=0.0)
