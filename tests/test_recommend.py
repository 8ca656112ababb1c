"""`grporec recommend` end to end on the tiny model: the evaluator's decoder, clear errors."""
import json

import pytest

from grporec import recommend
from grporec.config import dump_config
from grporec.data.load import load_split
from grporec.decode import build_catalog_trie
from grporec.evaluate import eval_samples, predict
from grporec.models.format import format_for
from grporec.models.policy import load_policy
from conftest import ENV


@pytest.fixture
def config_file(tiny_cfg, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(tiny_cfg))
    return path


def test_recommendations_are_the_evaluators_top_k(tiny_cfg, tiny_catalog, tiny_model_dir, config_file, capsys):
    """A test row's history given as item id, SID and title: the printed top 5 are the 5 SIDs the
    evaluator's beam search ranks first for that row, best first, each with its item and score."""
    row = next(r for r in load_split(tiny_cfg.data, "test", tiny_catalog) if len(r.history_ids) >= 3)
    h = row.history_ids[-3:]
    entries = [h[0], tiny_catalog.sid(h[1]), tiny_catalog.title(h[2])]
    assert len([it for it in tiny_catalog.items if it.title == entries[2]]) == 1  # the title names one item
    assert recommend.main(["--config", str(config_file), "--model", str(tiny_model_dir), "--history", *entries,
                           "--k", "5", "--json"]) == 0
    [line] = capsys.readouterr().out.strip().splitlines()
    got = json.loads(line)
    assert got["history"] == list(h)
    model, tok = load_policy(tiny_model_dir)
    fmt = format_for(tok, tiny_cfg.data.prompt_format, tiny_model_dir)
    trie = build_catalog_trie(fmt, tiny_catalog.sids)
    short = type(row)(row.user_id, row.history_titles[-3:], h, row.history_sids[-3:], "", "", "")
    [expected] = predict(model, fmt, trie, eval_samples(tiny_cfg, [short]), 5, 1, ENV)
    assert [r["sid"] for r in got["recommendations"]] == expected
    scores = [r["score"] for r in got["recommendations"]]
    assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)
    for r in got["recommendations"]:
        assert tiny_catalog.sid(r["item_id"]) == r["sid"] and r["title"] == tiny_catalog.title(r["item_id"])


def test_histories_from_json_lines_and_a_table(tiny_catalog, tiny_model_dir, config_file, tmp_path, capsys):
    ids = [it.item_id for it in tiny_catalog.items]
    users = tmp_path / "users.jsonl"
    users.write_text(json.dumps({"history": ids[:2]}) + "\n\n" + json.dumps({"history": [ids[3]]}) + "\n")
    assert recommend.main(["--config", str(config_file), "--model", str(tiny_model_dir), "--input", str(users), "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("history: ") == 2 and out.count("\n   1  ") == 2 and out.count("\n   3  ") == 2


def test_unknown_items_are_named_before_the_model_loads(tiny_catalog, config_file, tmp_path, capsys):
    first = tiny_catalog.items[0].item_id
    code = recommend.main(["--config", str(config_file), "--model", str(tmp_path / "no-model"), "--history", first,
                           "NOPE-1", "<a_999>"])
    err = capsys.readouterr().err
    assert code == 1 and "'NOPE-1' is not an item id, SID or title" in err and "'<a_999>'" in err and "no-model" not in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"history": ["' + first + '"]}\n{"items": []}\n')
    assert recommend.main(["--config", str(config_file), "--model", str(tmp_path), "--input", str(bad)]) == 1
    assert "bad.jsonl, line 2: expected a JSON object" in capsys.readouterr().err


def test_recommend_ranks_by_the_blend(tiny_cfg, tiny_catalog, tiny_model_dir, config_file, capsys):
    """--blend-a A: a history whose last item has one clearly most frequent successor in the training
    rows gets that successor first (a count of c >= 1 more outweighs A p_model <= A = 0.5), and each
    score is the blended probability (c(last -> i) + A p_model) / (c(last) + A), so it lies between
    c / (C + A) and (c + A) / (C + A) for the item's own count c (0 < p_model <= 1)."""
    from collections import Counter

    from grporec.metrics import transition_counts

    follows = transition_counts(load_split(tiny_cfg.data, "train", tiny_catalog))
    row = next(r for r in load_split(tiny_cfg.data, "test", tiny_catalog)
               if (top := follows.get(r.history_sids[-1], Counter()).most_common(2))
               and (len(top) == 1 or top[0][1] >= top[1][1] + 1))
    f = follows[row.history_sids[-1]]
    a, C = 0.5, sum(f.values())
    assert recommend.main(["--config", str(config_file), "--model", str(tiny_model_dir), "--history", *row.history_ids,
                           "--k", "4", "--json", "--blend-a", str(a)]) == 0
    got = json.loads(capsys.readouterr().out.strip())["recommendations"]
    assert len(got) == 4 and got[0]["sid"] == f.most_common(1)[0][0]
    scores = [r["score"] for r in got]
    assert scores == sorted(scores, reverse=True)
    for r in got:
        c = f.get(r["sid"], 0)
        assert c / (C + a) < r["score"] <= (c + a) / (C + a) + 1e-7
    assert recommend.main(["--config", str(config_file), "--model", str(tiny_model_dir), "--history", *row.history_ids,
                           "--blend-a", "0"]) == 2
    assert "--blend-a must be > 0" in capsys.readouterr().err


def test_recommend_blends_in_a_sasrec(tiny_cfg, tiny_catalog, tiny_model_dir, config_file, tmp_path, capsys):
    """--blend-sasrec DIR --blend-w 1 with a prior strength that drowns the counts: the list is
    SASRec's own top SIDs for the history, scored in proportion to SASRec's probabilities (items of a
    SID summed; the prior is renormalised over the candidates)."""
    import torch

    from grporec.models.sasrec import SASRec, SasrecShape
    from grporec.rewards.cf import SasrecScorer

    torch.manual_seed(0)
    sas = SASRec(SasrecShape(len(tiny_catalog.items), hidden=16, blocks=1, dropout=0.0)).eval()
    sas.save(tmp_path / "sasrec")
    row = load_split(tiny_cfg.data, "test", tiny_catalog)[0]
    base = ["--config", str(config_file), "--model", str(tiny_model_dir), "--history", *row.history_ids]
    assert recommend.main([*base, "--k", "3", "--json", "--blend-a", "1e9", "--blend-sasrec", str(tmp_path / "sasrec"),
                           "--blend-w", "1"]) == 0
    got = json.loads(capsys.readouterr().out.strip())["recommendations"]
    probs = SasrecScorer(sas, tiny_catalog).sid_probs([row.history_sids[-tiny_cfg.data.max_history:]])[0]  # naive: the scorer
    top = probs.topk(3)
    assert [r["sid"] for r in got] == [tiny_catalog.sids[k] for k in top.indices.tolist()]
    for r, p in zip(got, top.values.tolist()):  # (c + 1e9 q) / (C + 1e9) = q to within C / 1e9, q = p / (the candidates' sum)
        assert r["score"] / got[0]["score"] == pytest.approx(p / top.values[0].item(), rel=1e-4)
    for extra, message in ((["--blend-w", "0.5"], "--blend-sasrec and --blend-w need --blend-a"),
                           (["--blend-a", "1", "--blend-w", "0.5"], "--blend-sasrec DIR and --blend-w W go together"),
                           (["--blend-a", "1", "--blend-sasrec", str(tmp_path / "sasrec"), "--blend-w", "2"], "--blend-w must lie in [0, 1]")):
        assert recommend.main([*base, *extra]) == 2
        assert message in capsys.readouterr().err
    assert recommend.main([*base, "--blend-a", "1", "--blend-sasrec", str(tmp_path / "none"), "--blend-w", "0.5"]) == 1
    assert "no SASRec model (sasrec.json)" in capsys.readouterr().err
