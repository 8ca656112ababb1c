"""bench/quality.py's variant names: NAME@LR is NAME at another learning rate, applied last."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "experiments"))
import quality as Q  # noqa: E402

from grporec.config import load_config  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "office-tiny.yaml"


def test_variant_at_a_learning_rate_overrides_its_own_rate():
    plain = Q.variant_overrides("add_gt+rule_prefix+sample+lora")
    assert plain == Q.BASE + Q.VARIANTS["add_gt+rule_prefix+sample+lora"]
    at = Q.variant_overrides("add_gt+rule_prefix+sample+lora@1e-3")
    assert at == plain + ["train.lr=1e-3"]
    assert load_config(CONFIG, at).train.lr == 1e-3  # the variant's own train.lr=2e-3 comes first and loses
    assert load_config(CONFIG, plain).train.lr == 2e-3


@pytest.mark.parametrize("name, says", [("nope", "unknown 'nope'"), ("add_gt@fast", "'fast' after @")])
def test_bad_variant_names_stop_with_the_reason(name, says):
    with pytest.raises(SystemExit, match=says):
        Q.variant_overrides(name)


def test_seen_rows_split_by_how_often_their_transition_was_trained():
    import seen_by_count as S
    from grporec.data.formats import Interaction

    def row(hist, target):
        return Interaction("u", (), (), tuple(hist), "", "", target)

    # train: a->b three times, a->c once, d->e twice
    counts = S.transition_counts([row(["x", "a"], "b")] * 3 + [row(["a"], "c"), row(["d"], "e"), row(["d"], "e")])
    rows = [row(["a"], "b"), row(["a"], "c"), row(["d"], "e"), row(["q", "d"], "f"), row(["z"], "c")]
    preds = [["b"], ["x", "c"], ["y"], ["f"], ["q"]]
    m = S.by_count(counts, rows, preds, k=10)
    # 3+: a->b hit at rank 0; once: a->c at rank 1 -> ndcg 1/log2(3); twice: d->e missed;
    # unseen: d->f hit at rank 0 and z->c missed -> hr 1/2, ndcg 1/2
    assert m["3+"] == {"rows": 1, "hr": 1.0, "ndcg": 1.0}
    assert m["once"]["rows"] == 1 and m["once"]["hr"] == 1.0 and abs(m["once"]["ndcg"] - 0.6309297535714575) < 1e-12
    assert m["twice"] == {"rows": 1, "hr": 0.0, "ndcg": 0.0}
    assert m["unseen"] == {"rows": 2, "hr": 0.5, "ndcg": 0.5}
    # all five rows: hits at ranks 0, 1, 0 -> hr 3/5, ndcg (1 + 1/log2(3) + 1) / 5
    assert m["all"]["rows"] == 5 and m["all"]["hr"] == 0.6 and abs(m["all"]["ndcg"] - (2 + 0.6309297535714575) / 5) < 1e-12
    assert S.by_count(counts, rows[:1], [["x", "b"]], k=1)["3+"]["hr"] == 0.0  # the cut-off applies
    # successors first: a is followed by b (3) and c (1), d by e (2), z by nothing. Two in front:
    # a's lists become [b, c, ...], d's [e, ...]; z's list is its own
    pop = {"b": 0, "e": 1, "c": 2}
    assert S.successors_first(counts, pop, rows, preds, 2) == [["b", "c"], ["b", "c", "x"], ["e", "y"], ["e", "f"], ["q"]]
    assert S.successors_first(counts, pop, rows[:2], preds[:2], 1) == [["b"], ["b", "x", "c"]]
