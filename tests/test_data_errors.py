"""Every bad-input case gets one clear DataError naming the file and the row or line."""
import pytest

from grporec.config import DataConfig
from grporec.data.catalog import Catalog, load_catalog
from grporec.data.formats import DataError, read_index, read_info, read_interactions, split_sid
from grporec.data.load import load_split

HEADER = "user_id,history_item_title,item_title,history_item_id,item_id,history_item_sid,item_sid\n"
GOOD_ROW = "U1,\"['T a', 'T b']\",T c,\"[1, 2]\",3,\"['<a_1><b_1><c_1>', '<a_1><b_1><c_2>']\",<a_1><b_2><c_3>\n"
INFO = "<a_1><b_1><c_1>\tT a\t1\n<a_1><b_1><c_2>\tT b\t2\n<a_1><b_2><c_3>\tT c\t3\n"


def w(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_good_files_parse(tmp_path):
    rows = read_interactions(w(tmp_path, "t.csv", HEADER + GOOD_ROW))
    assert rows[0].history_sids == ("<a_1><b_1><c_1>", "<a_1><b_1><c_2>")
    assert rows[0].history_ids == ("1", "2") and rows[0].item_id == "3"
    cat = load_catalog(w(tmp_path, "i.txt", INFO))
    cat.check_interactions(rows, "t.csv")


def test_missing_and_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        read_interactions(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"empty\.txt: file is empty"):
        read_info(w(tmp_path, "empty.txt", ""))
    with pytest.raises(DataError, match=r"h\.csv: no data rows"):
        read_interactions(w(tmp_path, "h.csv", HEADER))


def test_csv_missing_column(tmp_path):
    text = HEADER.replace(",item_sid", "") + GOOD_ROW.rsplit(",", 1)[0] + "\n"
    with pytest.raises(DataError, match=r"m\.csv: missing column\(s\) item_sid"):
        read_interactions(w(tmp_path, "m.csv", text))


def test_malformed_list_literal(tmp_path):
    bad = GOOD_ROW.replace("['T a', 'T b']", "['T a', 'T b'")
    with pytest.raises(DataError, match=r"b\.csv, row 2 \(line 3\): column history_item_title: malformed list literal"):
        read_interactions(w(tmp_path, "b.csv", HEADER + GOOD_ROW + bad))


def test_list_literal_is_never_evaluated(tmp_path):
    bad = GOOD_ROW.replace("['T a', 'T b']", "__import__('os').getcwd()")
    with pytest.raises(DataError, match=r"row 1 .*column history_item_title: malformed list literal"):
        read_interactions(w(tmp_path, "e.csv", HEADER + bad))


def test_history_lengths_differ(tmp_path):
    bad = GOOD_ROW.replace('"[1, 2]"', '"[1]"')
    with pytest.raises(DataError, match=r"l\.csv, row 1 .*2 titles, 1 ids, 2 SIDs"):
        read_interactions(w(tmp_path, "l.csv", HEADER + bad))


def test_sid_not_in_catalog(tmp_path):
    csv = w(tmp_path, "s.csv", HEADER + GOOD_ROW + GOOD_ROW.replace("<a_1><b_2><c_3>", "<a_9><b_9><c_9>"))
    cfg = DataConfig(info_file=str(w(tmp_path, "i.txt", INFO)), train_file=str(csv))
    cat = load_catalog(cfg.info_file)
    with pytest.raises(DataError, match=r"s\.csv, row 2: column item_sid: SID <a_9><b_9><c_9> is not in the catalog"):
        load_split(cfg, "train", cat)


def test_duplicate_item_id(tmp_path):
    text = INFO + "<a_2><b_1><c_1>\tT d\t2\n"
    with pytest.raises(DataError, match=r"d\.txt, item 4: duplicate item id '2'"):
        load_catalog(w(tmp_path, "d.txt", text))


def test_malformed_sid(tmp_path):
    with pytest.raises(DataError, match=r"x\.txt, line 2: malformed SID '<a_1><b_1>c_2'"):
        read_info(w(tmp_path, "x.txt", INFO.replace("<a_1><b_1><c_2>", "<a_1><b_1>c_2")))
    bad = GOOD_ROW.replace(",<a_1><b_2><c_3>", ",a_1 b_2")
    with pytest.raises(DataError, match=r"y\.csv, row 1 .*column item_sid: malformed SID 'a_1 b_2'"):
        read_interactions(w(tmp_path, "y.csv", HEADER + bad))
    with pytest.raises(DataError, match=r"malformed SID"):
        split_sid("")


def test_info_wrong_field_count(tmp_path):
    with pytest.raises(DataError, match=r"f\.txt, line 3: expected 3 tab-separated fields .*found 2"):
        read_info(w(tmp_path, "f.txt", INFO.replace("\tT c\t3", "\tT c")))


def test_index_json_errors(tmp_path):
    with pytest.raises(DataError, match=r"j\.json, line 1: not valid JSON"):
        read_index(w(tmp_path, "j.json", '{"1": ['))
    with pytest.raises(DataError, match=r"k\.json, item 1: malformed SID"):
        read_index(w(tmp_path, "k.json", '{"1": ["<a_1>", "b_1"]}'))
    cat = load_catalog(w(tmp_path, "i.txt", INFO))
    with pytest.raises(DataError, match=r"z\.json, item 2: SID <a_5><b_1><c_2> but the info file says <a_1><b_1><c_2>"):
        load_catalog(tmp_path / "i.txt", w(tmp_path, "z.json", '{"1": ["<a_1>","<b_1>","<c_1>"], "2": ["<a_5>","<b_1>","<c_2>"], "3": ["<a_1>","<b_2>","<c_3>"]}'))
    assert len(cat) == 3


def test_unset_config_path_names_the_key(tmp_path):
    cfg = DataConfig(info_file=str(w(tmp_path, "i.txt", INFO)))
    cat = load_catalog(cfg.info_file)
    with pytest.raises(DataError, match=r"config key data\.valid_file is not set"):
        load_split(cfg, "valid", cat)
    cfg.valid_file = str(tmp_path / "absent.csv")
    with pytest.raises(DataError, match=r"absent\.csv: file not found \(config key data\.valid_file\)"):
        load_split(cfg, "valid", cat)


def test_catalog_collisions_and_order(tmp_path):
    text = "<a_1><b_1><c_1>\tT x\t10\n<a_1><b_1><c_1>\tT y\t2\n<a_2><b_1><c_1>\tT z\t1\n"
    cat = Catalog.from_items(read_info(w(tmp_path, "c.txt", text)))
    assert [it.item_id for it in cat.items] == ["1", "2", "10"]  # numeric id order, not text order
    assert cat.collisions == {"<a_1><b_1><c_1>": ["2", "10"]}
    assert cat.stats() == {"items": 3, "distinct_sids": 2, "sid_tokens": 4, "colliding_sids": 1, "items_in_collisions": 2}
    assert cat.sid_tokens == ["<a_1>", "<a_2>", "<b_1>", "<c_1>"]
    assert cat.is_hit("<a_1><b_1><c_1>", "<a_1><b_1><c_1>") and not cat.is_hit("<a_2><b_1><c_1>", "<a_1><b_1><c_1>")


def test_non_utf8_byte_names_file_line_and_column(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_bytes((HEADER + GOOD_ROW).encode() + GOOD_ROW.encode()[:10] + b"\xff" + GOOD_ROW.encode()[10:])
    with pytest.raises(DataError, match=r"bad\.csv, line 3, column 11 \(byte 0xff\): not valid UTF-8"):
        read_interactions(p)
    q = tmp_path / "bad.txt"
    q.write_bytes(INFO.encode().replace(b"T b", b"T \xe9b"))
    with pytest.raises(DataError, match=r"bad\.txt, line 2, column 19 \(byte 0xe9\): not valid UTF-8"):
        read_info(q)


def test_csv_field_over_the_csv_limit_names_the_line(tmp_path):
    # an unbalanced quote swallows the rest of the file into one field
    text = HEADER + GOOD_ROW + 'U2,"unclosed' + "x" * 140_000 + "\n" + GOOD_ROW
    with pytest.raises(DataError, match=r"f\.csv, line 3: malformed CSV: field larger than field limit .*quote unbalanced"):
        read_interactions(w(tmp_path, "f.csv", text))
