"""Evaluation metrics on hand-built predictions, and the evaluate command on the tiny model."""
import json
import math

import pytest

from grporec.data.catalog import Catalog
from grporec.data.datasets import Sample
from grporec.data.formats import ItemInfo
from grporec.evaluate import main as evaluate_main
from grporec.evaluate import prompt_input, score, write_outputs


def s(target):
    return Sample(prompt="### User Input: \nwhat next?\n\n### Response:\n", completion=target + "\n",
                  target_sid=target, history_sids=(), task="t")


CAT = Catalog.from_items([ItemInfo("<a_1>", "x", "0"), ItemInfo("<a_2>", "y", "1"), ItemInfo("<a_2>", "y2", "2"),
                          ItemInfo("<a_3>", "z", "3")])


def test_known_ranks_give_known_metrics():
    preds = [
        ["<a_1>", "<a_2>", "<a_3>"],  # target <a_1> at rank 0
        ["<a_3>", "<a_1>", "<a_2>"],  # target <a_2> at rank 2
        ["<a_3>", "<a_1>", None],  # target <a_2> missed; one invalid beam (catalog smaller than the beams)
        ["<a_1>", "<a_3>", "<a_1>"],  # target <a_3> at rank 1
    ]
    m = score(preds, [s("<a_1>"), s("<a_2>"), s("<a_2>"), s("<a_3>")], beams=3, catalog=CAT, ks=(1, 3, 5, 10, 20, 50))
    # HR@1 = 1/4; HR@3 = 3/4; NDCG@3 = (1 + 1/log2(4) + 1/log2(3)) / 4 = (1 + 0.5 + 0.630930) / 4 = 0.532732
    assert m["hr@1"] == 0.25 and m["ndcg@1"] == 0.25 and m["hr@3"] == 0.75
    assert m["ndcg@3"] == pytest.approx((1 + 0.5 + 1 / math.log2(3)) / 4)
    assert "hr@5" not in m and "ndcg@50" not in m  # K larger than the beam count is not reported
    assert m["invalid_outputs"] == 1 and m["rows"] == 4


def test_collided_sid_is_a_hit_for_either_item():
    # items 1 and 2 share <a_2>: generating <a_2> hits a target of either; SID equality is the rule
    m = score([["<a_2>", "<a_1>"]], [s("<a_2>")], beams=2, catalog=CAT, ks=(1,))
    assert m["hr@1"] == 1.0 and m["targets_with_collided_sid"] == 1


def test_k_beyond_valid_beams_counts_misses():
    # 5 beams but only 2 valid completions: the rest are None; a target never generated is a miss at every K
    m = score([["<a_1>", "<a_3>", None, None, None]], [s("<a_2>")], beams=5, catalog=CAT, ks=(1, 3, 5))
    assert m["hr@5"] == 0.0 and m["ndcg@5"] == 0.0 and m["invalid_outputs"] == 3


def test_minionerec_prediction_records(tmp_path):
    write_outputs(tmp_path, {"hr@1": 1.0}, [["<a_1>", None]], [s("<a_1>")], {"beams": 2})
    rec = json.loads((tmp_path / "predictions.json").read_text())
    assert rec == [{"input": "what next?", "output": "<a_1>\n", "predict": ["<a_1>"]}]
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"beams": 2, "hr@1": 1.0}
    assert prompt_input("no template") == "no template"


def test_evaluate_command_on_tiny_model(tiny_cfg, tiny_model_dir, tiny_catalog, tmp_path):
    from grporec.config import dump_config

    (tmp_path / "c.yaml").write_text(dump_config(tiny_cfg))
    evaluate_main(["--config", str(tmp_path / "c.yaml"), "--model", str(tiny_model_dir), "--split", "test",
                   "--beams", "25", "--out", str(tmp_path / "ev")])
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert {f"{x}@{k}" for x in ("hr", "ndcg") for k in (1, 3, 5, 10, 20)} <= set(m) and "hr@50" not in m
    # beams beyond the number of distinct SIDs come back invalid; every other beam is a real SID
    assert m["invalid_outputs"] == m["rows"] * max(0, 25 - len(tiny_catalog.sids))
    preds = json.loads((tmp_path / "ev" / "predictions.json").read_text())
    assert len(preds) == m["rows"]
    assert all(p in tiny_catalog.ids_of_sid for r in preds for p in r["predict"])  # every generated SID is real
    assert all(len(set(r["predict"])) == len(r["predict"]) for r in preds)


def test_evaluate_command_honours_eval_ks_and_max_rows_and_flags_override(tiny_cfg, tiny_model_dir, tmp_path):
    from grporec.config import dump_config, load_config

    (tmp_path / "base.yaml").write_text(dump_config(tiny_cfg))
    cfg = load_config(tmp_path / "base.yaml", ["eval.ks=[2, 4]", "eval.max_rows=3"])
    (tmp_path / "c.yaml").write_text(dump_config(cfg))
    evaluate_main(["--config", str(tmp_path / "c.yaml"), "--model", str(tiny_model_dir), "--beams", "5", "--out", str(tmp_path / "a")])
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert sorted(k for k in m if k.startswith(("hr@", "ndcg@"))) == ["hr@2", "hr@4", "ndcg@2", "ndcg@4"] and m["rows"] == 3
    evaluate_main(["--config", str(tmp_path / "c.yaml"), "--model", str(tiny_model_dir), "--beams", "5", "--ks", "1", "7",
                   "--max-rows", "2", "--out", str(tmp_path / "b")])
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert sorted(k for k in m if k.startswith(("hr@", "ndcg@"))) == ["hr@1", "ndcg@1"] and m["rows"] == 2  # 7 > 5 beams


def test_seen_unseen_buckets_by_hand():
    """Ranks [0, 2, -1, 1], seen [yes, no, yes, no]. Seen rows: ranks 0 and -1, HR@1 = HR@3 = 1/2,
    NDCG@3 = (1/log2(2) + 0) / 2 = 0.5. Unseen rows: ranks 2 and 1, HR@1 = 0, HR@3 = 1,
    NDCG@3 = (1/log2(4) + 1/log2(3)) / 2 = (0.5 + 0.63093) / 2 = 0.56546."""
    from grporec.metrics import bucket_metrics, seen_flags, train_transitions
    from grporec.data.formats import Interaction

    b = bucket_metrics([0, 2, -1, 1], [True, False, True, False], ks=(1, 3))
    assert b["seen"] == {"hr@1": 0.5, "ndcg@1": 0.5, "hr@3": 0.5, "ndcg@3": 0.5, "rows": 2}
    assert b["unseen"]["hr@1"] == 0 and b["unseen"]["hr@3"] == 1 and b["unseen"]["rows"] == 2
    assert b["unseen"]["ndcg@3"] == pytest.approx((0.5 + 1 / math.log2(3)) / 2)
    train = [Interaction("u", ("t", "t"), ("1", "2"), ("X", "A"), "t", "3", "B")]  # only A -> B is seen (not X -> B)
    assert seen_flags([("A", "B"), ("X", "B"), ("A", "C"), (None, "B")], train_transitions(train)) == [True, False, False, False]


def test_every_report_splits_its_rows_into_seen_and_unseen(tiny_cfg):
    """The baselines' buckets partition the rows, and recombine into the overall figures."""
    from grporec.baselines import evaluate_baselines

    for name, m in evaluate_baselines(tiny_cfg, "test", 20).items():
        s, u = m["seen"], m["unseen"]
        assert s["rows"] + u["rows"] == m["rows"] and s["rows"] > 0 and u["rows"] > 0, name
        for k in ("hr@10", "ndcg@10"):
            assert (s["rows"] * s[k] + u["rows"] * u[k]) / m["rows"] == pytest.approx(m[k], abs=1e-12), (name, k)
    markov = evaluate_baselines(tiny_cfg, "test", 20)["markov"]
    assert markov["seen"]["hr@10"] > markov["unseen"]["hr@10"]  # what Markov counts, it remembers


def test_exact_ranking_is_the_catalog_sorted_by_sequence_log_prob(tiny_cfg, tiny_model_dir, tiny_catalog, tmp_path):
    """--exact: one beam per SID, so no prefix is ever dropped; the stored list is the catalog's
    top max(--ks) by exact sequence log-probability. Checked against a plain forward over every
    catalog completion for two rows (the decoder's exactness itself: test_decode)."""
    import torch

    from grporec.config import dump_config
    from grporec.decode import build_catalog_trie
    from grporec.evaluate import eval_samples, exact_beams
    from grporec.data.load import load_split
    from grporec.logprobs import full_completion_logps
    from grporec.models.format import format_for
    from grporec.models.policy import load_policy

    (tmp_path / "c.yaml").write_text(dump_config(tiny_cfg))
    evaluate_main(["--config", str(tmp_path / "c.yaml"), "--model", str(tiny_model_dir), "--exact", "--ks", "1", "3",
                   "--max-rows", "2", "--out", str(tmp_path / "ex")])
    m = json.loads((tmp_path / "ex" / "metrics.json").read_text())
    assert m["beams"] == "exact" and m["rows"] == 2 and m["invalid_outputs"] == 0
    preds = json.loads((tmp_path / "ex" / "predictions.json").read_text())
    model, tok = load_policy(tiny_model_dir)
    fmt = format_for(tok, tiny_cfg.data.prompt_format, str(tiny_model_dir))
    trie = build_catalog_trie(fmt, tiny_catalog.sids)
    assert exact_beams(trie) >= max(trie.stats()["states_per_depth"])  # wide enough never to prune
    samples = eval_samples(tiny_cfg, load_split(tiny_cfg.data, "test", tiny_catalog), 2)
    for row, s in zip(preds, samples):
        prompt = torch.tensor([fmt.prompt_ids(s.prompt)])
        n = trie.num_labels
        mask = (torch.arange(trie.paths.shape[1]) < trie.path_lengths.unsqueeze(1)).long()  # pad may equal EOS: lengths
        with torch.no_grad():
            lp = full_completion_logps(model, prompt, torch.ones_like(prompt), trie.paths, mask)
        scores = (lp * mask).sum(1)  # [n] each SID's sequence log-prob
        best = [trie.names[i] for i in scores.argsort(descending=True)[:3].tolist()]
        assert len(scores) == n and row["predict"] == best
