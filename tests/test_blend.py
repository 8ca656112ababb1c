"""The blended recommender (grporec.blend): the formula by hand, candidates, exact scores against
plain forwards, and `grporec eval --blend-a` end to end."""
import json
import math
from collections import Counter

import pytest
import torch

from conftest import tiny_loop_cfg
from grporec import evaluate
from grporec.blend import Candidates, blend_rank, blend_scores, candidate_labels, score_candidates
from grporec.config import dump_config
from grporec.data.load import load_data_catalog, load_split
from grporec.decode import build_catalog_trie, left_pad
from grporec.evaluate import eval_samples
from grporec.logprobs import completion_logps
from grporec.metrics import transition_counts
from grporec.models.format import format_for
from grporec.models.policy import load_policy
from grporec.models.sasrec import SASRec, SasrecShape
from grporec.rewards.cf import SasrecScorer


def test_the_blend_by_hand():
    logp = torch.tensor([0.5, 0.2, 0.05]).log()
    counts = torch.tensor([0.0, 3.0, 1.0])
    # a = 2, c(last) = 4: (0 + 2 * .5) / 6, (3 + 2 * .2) / 6, (1 + 2 * .05) / 6
    torch.testing.assert_close(blend_scores(logp, counts, 4.0, 2.0), torch.tensor([1.0, 3.4, 1.1]) / 6)
    torch.testing.assert_close(blend_scores(logp, torch.zeros(3), 0.0, 7.0), logp.exp())  # never followed: the model
    with pytest.raises(ValueError, match="a must be > 0"):
        blend_scores(logp, counts, 4.0, 0.0)
    row = Candidates([10, 11, 12], logp, counts, 4.0)
    names = {10: "x", 11: "y", 12: "z"}
    assert blend_rank([row], names, 2.0, 3) == [["y", "z", "x"]]  # .567, .183, .167
    assert blend_rank([row], names, 1e9, 2) == [["x", "y"]]  # a strong prior: the model's order
    assert blend_rank([row], names, 1e-9, 3) == [["y", "z", "x"]]  # a weak one: the counts, then the model


def test_the_blend_with_sasrec_in_the_prior_by_hand():
    logp = torch.tensor([0.5, 0.2, 0.05]).log()
    sas_logp = torch.tensor([0.1, 0.6, 0.1]).log()
    counts = torch.tensor([0.0, 3.0, 1.0])
    # w = .5: q proportional to sqrt(.5 * .1), sqrt(.2 * .6), sqrt(.05 * .1) = .2236, .3464, .0707 (sum .6407),
    # so q = .3490, .5407, .1104; a = 2, c(last) = 4: (0 + 2 q) / 6, (3 + 2 q) / 6, (1 + 2 q) / 6
    q = torch.tensor([0.5 * 0.1, 0.2 * 0.6, 0.05 * 0.1]).sqrt()
    q = q / q.sum()
    torch.testing.assert_close(blend_scores(logp, counts, 4.0, 2.0, sas_logp, 0.5), (counts + 2 * q) / 6)
    torch.testing.assert_close(q, torch.tensor([0.3490, 0.5407, 0.1104]), atol=1e-4, rtol=0)
    # w = 0: the model renormalised over the candidates (.5, .2, .05 / .75); w = 1: SASRec's (.1, .6, .1 / .8)
    torch.testing.assert_close(blend_scores(logp, counts, 4.0, 2.0, sas_logp, 0.0), (counts + 2 * logp.exp() / 0.75) / 6)
    torch.testing.assert_close(blend_scores(logp, counts, 4.0, 2.0, sas_logp, 1.0), (counts + 2 * sas_logp.exp() / 0.8) / 6)
    # a SASRec probability that underflowed to 0 is a 0 in the product, not a NaN at w = 0
    assert torch.isfinite(blend_scores(logp, counts, 4.0, 2.0, torch.tensor([0.0, 0.5, 0.5]).log(), 0.0)).all()
    with pytest.raises(ValueError, match="needs SASRec scores"):
        blend_scores(logp, counts, 4.0, 2.0, None, 0.5)
    with pytest.raises(ValueError, match=r"w must lie in \[0, 1\]"):
        blend_scores(logp, counts, 4.0, 2.0, sas_logp, 1.5)
    row = Candidates([10, 11, 12], logp, torch.zeros(3), 0.0, sas_logp)
    names = {10: "x", 11: "y", 12: "z"}
    assert blend_rank([row], names, 1.0, 3, w=0.0) == [["x", "y", "z"]]  # the model's order
    # w = .9: q proportional to .5^.1 .1^.9, .2^.1 .6^.9, .05^.1 .1^.9 = .1175, .5376, .0933: SASRec's favourite first
    assert blend_rank([row], names, 1.0, 3, w=0.9) == [["y", "x", "z"]]


def test_candidates_are_the_beams_then_the_most_frequent_successors():
    index = {"s3": 3, "s5": 5, "s7": 7, "s9": 9}
    follows = Counter({"s5": 4, "s7": 2, "s9": 1})
    assert candidate_labels([3, -1, 5], follows, index, max_successors=2) == [3, 5, 7]  # -1: an invalid beam
    assert candidate_labels([3], Counter(), index, max_successors=2) == [3]
    assert candidate_labels([3, 5], follows, index, max_successors=1, extra=[9, 3, 11]) == [3, 5, 9, 11]  # then SASRec's, once each


def test_candidate_scores_are_the_exact_sequence_log_probs(tiny_cfg, tiny_model_dir):
    catalog = load_data_catalog(tiny_cfg.data)
    model, tok = load_policy(tiny_model_dir)
    fmt = format_for(tok, "alpaca", tiny_model_dir)
    trie = build_catalog_trie(fmt, catalog.sids)
    train = load_split(tiny_cfg.data, "train", catalog)
    follows = transition_counts(train)
    samples = eval_samples(tiny_cfg, load_split(tiny_cfg.data, "valid", catalog), 6)
    scored = score_candidates(model.eval(), fmt, trie, samples, follows, beams=4, batch=3, device="cpu")
    assert len(scored) == 6
    index = {sid: i for i, sid in enumerate(trie.names)}
    for s, c in zip(samples, scored):
        f = follows.get(s.history_sids[-1], Counter())
        assert {index[sid] for sid in f} <= set(c.labels) and len(c.labels) >= 4  # every successor (< 50 here), and the beams
        assert c.total == sum(f.values()) and c.counts.tolist() == [f.get(trie.names[lab], 0) for lab in c.labels]
        # naive reference: each candidate alone, one forward over its prompt and its SID's tokens
        ids, mask = left_pad([fmt.prompt_ids(s.prompt)], fmt.pad_id, "cpu")
        for lab, lp in zip(c.labels, c.logp):
            comp, cmask = trie.path(torch.tensor([lab]))
            with torch.no_grad():
                alone = (completion_logps(model, ids, mask, comp, cmask) * cmask).sum()
            assert math.isclose(float(lp), float(alone), abs_tol=1e-5)


def test_sasrec_candidates_and_scores(tiny_cfg, tiny_model_dir):
    """With a SASRec, its top SIDs join each row's candidates and every candidate carries SASRec's
    probability of its SID after the row's history (SasrecScorer.sid_probs, items of one SID summed)."""
    catalog = load_data_catalog(tiny_cfg.data)
    model, tok = load_policy(tiny_model_dir)
    fmt = format_for(tok, "alpaca", tiny_model_dir)
    trie = build_catalog_trie(fmt, catalog.sids)
    follows = transition_counts(load_split(tiny_cfg.data, "train", catalog))
    samples = eval_samples(tiny_cfg, load_split(tiny_cfg.data, "valid", catalog), 5)
    torch.manual_seed(0)
    scorer = SasrecScorer(SASRec(SasrecShape(len(catalog.items), hidden=16, blocks=1, dropout=0.0)), catalog)
    plain = score_candidates(model.eval(), fmt, trie, samples, follows, beams=3, batch=2, device="cpu")
    scored = score_candidates(model.eval(), fmt, trie, samples, follows, beams=3, batch=2, device="cpu", sasrec=scorer, sasrec_top=4)
    probs = scorer.sid_probs([tuple(s.history_sids) for s in samples])  # [B, S], naive: the scorer itself
    index = {sid: i for i, sid in enumerate(trie.names)}
    for b, (p, c) in enumerate(zip(plain, scored)):
        top = [index[catalog.sids[k]] for k in probs[b].topk(4).indices.tolist()]
        assert c.labels == p.labels + [lab for lab in dict.fromkeys(top) if lab not in p.labels]  # the plain list, then SASRec's top 4
        torch.testing.assert_close(c.logp[:len(p.labels)], p.logp)
        expect = torch.tensor([probs[b, scorer.sid_index[trie.names[lab]]] for lab in c.labels]).log()
        torch.testing.assert_close(c.sas_logp, expect)
        # all weight on SASRec and a prior that drowns the counts: SASRec's own favourite comes first
        assert blend_rank([c], trie.names, 1e9, 1, w=1.0)[0][0] == catalog.sids[int(probs[b].argmax())]


def test_eval_ranks_by_the_blend(tiny_cfg, tiny_model_dir, tmp_path, capsys):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(dump_config(tiny_loop_cfg(tiny_cfg, tiny_model_dir, tmp_path)))
    common = ["--config", str(cfg_file), "--model", str(tiny_model_dir), "--split", "valid", "--beams", "5", "--max-rows", "8"]
    assert evaluate.main([*common, "--blend-a", "0.5", "--out", str(tmp_path / "b")]) == 0
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    preds = json.loads((tmp_path / "b" / "predictions.json").read_text())
    assert metrics["blend_a"] == 0.5 and metrics["rows"] == 8 and metrics["invalid_outputs"] == 0
    catalog = load_data_catalog(tiny_cfg.data)
    follows = transition_counts(load_split(tiny_cfg.data, "train", catalog))
    samples = eval_samples(tiny_cfg, load_split(tiny_cfg.data, "valid", catalog), 8)
    checked = 0
    for p, s in zip(preds, samples):
        f = follows.get(s.history_sids[-1], Counter())
        top = f.most_common(2)
        if top and (len(top) == 1 or top[0][1] >= top[1][1] + 1):  # a clear most frequent successor: c >= 1 beats a * p <= .5
            assert p["predict"][0] == top[0][0]
            checked += 1
    assert checked >= 4  # 7 of these 8 rows have one
    assert evaluate.main([*common, "--blend-a", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--blend-a must be > 0" in capsys.readouterr().err
    assert evaluate.main([*common, "--blend-a", "1", "--exact", "--out", str(tmp_path / "x")]) == 2
    assert "not with --exact" in capsys.readouterr().err
    # SASRec in the prior with all the weight and a prior that drowns the counts: SASRec's favourite first
    torch.manual_seed(0)
    sas = SASRec(SasrecShape(len(catalog.items), hidden=16, blocks=1, dropout=0.0)).eval()
    sas.save(tmp_path / "sasrec")
    assert evaluate.main([*common, "--blend-a", "1e9", "--blend-sasrec", str(tmp_path / "sasrec"), "--blend-w", "1",
                          "--out", str(tmp_path / "s")]) == 0
    metrics = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert metrics["blend_w"] == 1.0 and metrics["blend_sasrec"] == str(tmp_path / "sasrec")
    probs = SasrecScorer(sas, catalog).sid_probs([tuple(s.history_sids) for s in samples])
    firsts = [p["predict"][0] for p in json.loads((tmp_path / "s" / "predictions.json").read_text())]
    assert firsts == [catalog.sids[k] for k in probs.argmax(1).tolist()]
