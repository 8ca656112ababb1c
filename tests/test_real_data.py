"""The real Office_Products files in ../shared load completely (skipped when absent)."""
import pytest

from conftest import OFFICE
from grporec.config import DataConfig
from grporec.data import datasets as D
from grporec.data.formats import read_interactions
from grporec.data.load import load_data_catalog, load_item_features, load_split

pytestmark = pytest.mark.skipif(not OFFICE.is_dir(), reason="../shared/data/minionerec is absent")
NAME = "Office_Products_5_2016-10-2018-11"


@pytest.fixture(scope="module")
def cfg():
    return DataConfig(
        info_file=str(OFFICE / "info" / f"{NAME}.txt"),
        valid_file=str(OFFICE / "valid" / f"{NAME}.csv"),
        test_file=str(OFFICE / "test" / f"{NAME}.csv"),
        index_file=str(OFFICE / "index" / "Office_Products.index.json"),
        item_file=str(OFFICE / "index" / "Office_Products.item.json"),
    )


def test_catalog_statistics(cfg):
    cat = load_data_catalog(cfg)
    assert cat.stats() == {"items": 3459, "distinct_sids": 3444, "sid_tokens": 600,
                           "colliding_sids": 15, "items_in_collisions": 30}
    assert len({t for t in cat.sid_tokens if t.startswith("<a_")}) == 88


def test_every_row_parses(cfg):
    cat = load_data_catalog(cfg)
    for split in ("valid", "test"):
        rows = load_split(cfg, split, cat)
        assert len(rows) == 4866
        assert all(1 <= len(r.history_sids) <= 10 for r in rows)
        assert len(D.SidDataset(rows)) == len(D.EvalSidDataset(rows)) == 4866
    with open(cfg.valid_file, encoding="utf-8") as f:  # no row silently dropped
        import csv
        assert sum(1 for _ in csv.reader(f)) - 1 == len(read_interactions(cfg.valid_file))


def test_item_features(cfg):
    cat = load_data_catalog(cfg)
    feats = load_item_features(cfg)
    ds = D.Title2SidDataset(cat, feats, cfg.item_file)
    titles = sum(1 for s in ds if s.task == "title2sid:title")
    descs = sum(1 for s in ds if s.task == "title2sid:description")
    assert titles == sum(1 for f in feats.values() if f["title"].strip())
    assert 0 < descs < titles  # some items have no description
    assert all(s.prompt.endswith("### Response:\n") for s in ds)
