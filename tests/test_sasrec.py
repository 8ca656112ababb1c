import pytest
import torch

from grporec.config import SasrecConfig
from grporec.data.catalog import Catalog
from grporec.data.formats import Interaction, ItemInfo
from grporec.metrics import first_hit_rank, ranking_metrics
from grporec.models.sasrec import SASRec
from grporec.rewards import RewardInputs
from grporec.rewards.cf import SasrecScorer, sasrec_reward
from grporec.sasrec import evaluate_sasrec, train_sasrec


def cyclic_data(n_items=8):
    """Next item = (last + 1) mod n: fully determined by the history, so HR@1 can reach 1."""
    cat = Catalog.from_items([ItemInfo(f"<a_{i}><b_{i % 3}>", f"t{i}", str(i)) for i in range(n_items)])
    rows = []
    for start in range(n_items):
        for length in (1, 2, 3):
            hist = [(start + k) % n_items for k in range(length)]
            nxt = (hist[-1] + 1) % n_items
            rows.append(Interaction("U", tuple(f"t{h}" for h in hist), tuple(str(h) for h in hist),
                                    tuple(cat.sid(str(h)) for h in hist), f"t{nxt}", str(nxt), cat.sid(str(nxt))))
    return cat, rows


def test_sasrec_overfits_to_hr1_of_one(tmp_path):
    cat, rows = cyclic_data()
    cfg = SasrecConfig(hidden=32, blocks=1, heads=1, dropout=0.0, lr=5e-3, batch_size=8, epochs=60, patience=60)
    model, info = train_sasrec(cfg, cat, rows, None, seed=0, progress=False)
    m = evaluate_sasrec(model, cat, rows)
    assert m["hr@1"] == 1.0 and m["ndcg@1"] == 1.0
    model.save(tmp_path / "s")
    again = SASRec.load(tmp_path / "s")
    assert evaluate_sasrec(again, cat, rows) == m
    # as a reward: the true next item gets most of the probability mass; a title task gets 0
    scorer = SasrecScorer(again, cat)
    x = RewardInputs([cat.sid("3"), cat.sid("5"), None, cat.sid("3")], [cat.sid("3"), cat.sid("0")], 2, torch.arange(2).repeat(2),
                     histories=[(cat.sid("1"), cat.sid("2")), ()])
    r = sasrec_reward(x, scorer)
    assert r[0] > 0.5 and r[1] < 0.1 and r[2] == 0 and r[3] == 0


def test_sasrec_load_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="train one with"):
        SASRec.load(tmp_path)


def test_ranking_metrics_by_hand():
    # ranks: hit at 0, hit at 2, miss, hit at 9
    m = ranking_metrics([0, 2, -1, 9], ks=(1, 3, 10))
    assert m["hr@1"] == 0.25 and m["hr@3"] == 0.5 and m["hr@10"] == 0.75
    # ndcg@3 = (1/log2(2) + 1/log2(4)) / 4 = (1 + 0.5) / 4 = 0.375
    assert m["ndcg@3"] == pytest.approx(0.375)
    # ndcg@10 adds 1/log2(11) = 0.289065 -> (1.5 + 0.289065) / 4 = 0.447266
    assert m["ndcg@10"] == pytest.approx(0.4472662, abs=1e-6)
    assert first_hit_rank(["a", None, "b", "b"], "b") == 2 and first_hit_rank(["a"], "z") == -1
    with pytest.raises(ValueError):
        ranking_metrics([])


def test_paired_difference_by_hand():
    from grporec.metrics import paired_difference, row_ndcg

    # model a: ranks [0, -1, 1]; model b: ranks [0, 0, -1]; NDCG@10 rows a = [1, 0, 0.63093], b = [1, 1, 0]
    assert row_ndcg([0, -1, 1], 10) == pytest.approx([1.0, 0.0, 0.6309298])
    mean, se = paired_difference([0, -1, 1], [0, 0, -1], 10)
    # d = [0, 1, -0.63093]; mean = 0.12302; var = ((0.12302)^2 + (0.87698)^2 + (0.75395)^2) / 2 = 0.67661; se = sqrt(var / 3)
    assert mean == pytest.approx((1 - 0.6309298) / 3)
    d = [0.0, 1.0, -0.6309298]
    var = sum((x - mean) ** 2 for x in d) / 2
    assert se == pytest.approx((var / 3) ** 0.5)
    with pytest.raises(ValueError):
        paired_difference([0], [0, 1], 10)


def test_paired_hr_difference_by_hand():
    from grporec.metrics import paired_hr_difference

    # a: ranks [0, -1, 12], b: [0, 3, 5]; HR@10 a = [1, 0, 0], b = [1, 1, 1]; d = [0, 1, 1]; mean 2/3
    mean, se = paired_hr_difference([0, -1, 12], [0, 3, 5], 10)
    assert mean == pytest.approx(2 / 3)
    var = ((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2  # = 1/3
    assert se == pytest.approx((var / 3) ** 0.5)
    with pytest.raises(ValueError, match="the same rows"):
        paired_hr_difference([0], [0, 1], 10)
