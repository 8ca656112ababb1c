import collections
import filecmp

from grporec.data import synth
from grporec.data.catalog import load_catalog
from grporec.data.formats import read_interactions, split_sid


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_byte_identical_for_same_seed(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    synth.write(synth.PRESETS["demo"], 5, a)
    synth.write(synth.PRESETS["demo"], 5, b)
    synth.write(synth.PRESETS["demo"], 6, c)
    assert _files(a) == _files(b) and len(_files(a)) == 6
    for f in _files(a):
        assert filecmp.cmp(a / f, b / f, shallow=False), f
    assert not filecmp.cmp(a / "train" / "Demo.csv", c / "train" / "Demo.csv", shallow=False)


def test_demo_structure(tmp_path):
    p = synth.write(synth.PRESETS["demo"], 0, tmp_path)
    cat = load_catalog(p.info, p.index)
    pre = synth.PRESETS["demo"]
    assert 200 <= len(cat) <= 500
    assert len(cat.collisions) == pre.n_collisions
    assert len({split_sid(s)[0] for s in cat.sids}) == pre.n_categories
    splits = {k: read_interactions(getattr(p, k)) for k in ("train", "valid", "test")}
    n = sum(len(v) for v in splits.values())
    assert 2000 <= len(splits["train"]) <= 5000
    # 80/10/10 by count (int() floors each cut)
    assert len(splits["train"]) == int(n * 0.8) and len(splits["valid"]) == int(n * 0.9) - int(n * 0.8)
    for rows in splits.values():
        cat.check_interactions(rows, "synth")
        assert all(1 <= len(r.history_sids) <= 10 for r in rows)
        assert all(cat.sid(r.item_id) == r.item_sid for r in rows)
    # Long tail: the most popular 10% of items take far more than 10% of targets.
    counts = sorted(collections.Counter(r.item_id for r in splits["train"]).values(), reverse=True)
    assert sum(counts[: len(cat) // 10]) > 0.3 * sum(counts)
    # History matters: the next item shares the last item's category far more often than chance.
    same = sum(split_sid(r.item_sid)[0] == split_sid(r.history_sids[-1])[0] for r in splits["train"])
    assert same / len(splits["train"]) > 0.5  # chance is about 1/6


def test_industrial_like_shape(tmp_path):
    p = synth.write(synth.PRESETS["industrial-like"], 0, tmp_path)
    cat = load_catalog(p.info, p.index)
    assert 3400 <= len(cat) <= 4000
    assert len({split_sid(s)[0] for s in cat.sids}) == 48
    assert len(cat.collisions) == 15
    assert all(int(t[3:-1]) < 256 for t in cat.sid_tokens)
    train = read_interactions(p.train)
    assert 33000 <= len(train) <= 39000
    assert {len(r.history_sids) for r in train} == set(range(1, 11))
