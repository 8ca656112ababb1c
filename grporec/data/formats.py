"""Readers for MiniOneRec's data files, unchanged: info .txt, index.json, item.json, split CSVs.

Each reader returns plain Python records and raises `DataError` naming the file and the row or
line for any malformed input, so a user never sees a traceback from deep inside a parser and no
row is ever silently skipped. List columns of the CSVs are Python list literals and are parsed
with `ast.literal_eval` (never `eval`).
"""
from __future__ import annotations

import ast
import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from grporec.errors import UserError

CSV_COLUMNS = (
    "user_id",
    "history_item_title",
    "item_title",
    "history_item_id",
    "item_id",
    "history_item_sid",
    "item_sid",
)
# An SID is one or more tokens like <a_12>; the letter names the level, the number the code.
SID_TOKEN_RE = re.compile(r"<[a-z]_\d+>")
SID_RE = re.compile(r"^(?:<[a-z]_\d+>)+$")


class DataError(UserError):
    """Malformed or inconsistent input data; the message names the file and row or line."""


@dataclass(frozen=True)
class Interaction:
    """One CSV row: a user's history (oldest first) and the next item."""

    user_id: str
    history_titles: tuple[str, ...]
    history_ids: tuple[str, ...]
    history_sids: tuple[str, ...]
    item_title: str
    item_id: str
    item_sid: str


@dataclass(frozen=True)
class ItemInfo:
    """One line of the info file."""

    sid: str
    title: str
    item_id: str


def split_sid(sid: str, where: str = "") -> list[str]:
    """`"<a_1><b_2><c_3>"` -> `["<a_1>", "<b_2>", "<c_3>"]`; a malformed SID is a DataError."""
    if not isinstance(sid, str) or not SID_RE.match(sid):
        raise DataError(f"{where}malformed SID {sid!r}: expected tokens like <a_12><b_3><c_45>")
    return SID_TOKEN_RE.findall(sid)


def sid_codes(sids: list[str], where: str = "") -> torch.Tensor:
    """[N, K] the integer code of every level of each SID (`<a_1><b_2><c_3>` -> [1, 2, 3]), K the
    most levels of any; -1 after a shorter SID's last level. What level rewards and prefix-tree
    advantages compare, so that no loss or reward re-parses SID strings."""
    levels = [[int(t[3:-1]) for t in split_sid(s, where)] for s in sids]
    K = max((len(x) for x in levels), default=0)
    return torch.tensor([x + [-1] * (K - len(x)) for x in levels], dtype=torch.long).view(len(sids), K)


def _require_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    return path


def _first_bad_utf8(path: Path) -> str:
    """Where the first byte sequence that is not UTF-8 is: 'line N, column C (byte 0xNN)'."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return f"line {lineno}, column {e.start + 1} (byte 0x{raw[e.start]:02x})"
    return "an unknown position"


def _not_utf8(path: Path) -> DataError:
    return DataError(f"{path}, {_first_bad_utf8(path)}: not valid UTF-8 text; MiniOneRec's files are UTF-8 "
                     "(re-encode the file, e.g. with iconv -t UTF-8)")


def read_info(path: str | Path) -> list[ItemInfo]:
    """Read `sid<TAB>title<TAB>item_id` lines."""
    path = _require_file(path)
    try:
        return _read_info(path)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None


def _read_info(path: Path) -> list[ItemInfo]:
    items = []
    with path.open(encoding="utf-8", newline="") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line:
                continue  # a trailing blank line is not an item
            parts = line.split("\t")
            if len(parts) != 3:
                raise DataError(
                    f"{path}, line {lineno}: expected 3 tab-separated fields "
                    f"(sid, title, item_id), found {len(parts)}"
                )
            sid, title, item_id = (p.strip() for p in parts)
            split_sid(sid, where=f"{path}, line {lineno}: ")
            items.append(ItemInfo(sid=sid, title=title, item_id=item_id))
    if not items:
        raise DataError(f"{path}: no items")
    return items


def _read_json_object(path: str | Path) -> dict:
    path = _require_file(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}, line {e.lineno}: not valid JSON: {e.msg}") from None
    if not isinstance(obj, dict) or not obj:
        raise DataError(f"{path}: expected a non-empty JSON object keyed by item id")
    return obj


def read_index(path: str | Path) -> dict[str, str]:
    """Read `<Category>.index.json`: item id -> SID string (tokens concatenated)."""
    obj = _read_json_object(path)
    out = {}
    for item_id, tokens in obj.items():
        where = f"{path}, item {item_id}: "
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
            raise DataError(f"{where}expected a list of SID tokens, got {tokens!r}")
        sid = "".join(tokens)
        if split_sid(sid, where=where) != tokens:
            raise DataError(f"{where}malformed SID tokens {tokens!r}")
        out[str(item_id)] = sid
    return out


def read_items(path: str | Path) -> dict[str, dict]:
    """Read `<Category>.item.json`: item id -> {"title", "description", ...}."""
    obj = _read_json_object(path)
    for item_id, feat in obj.items():
        if not isinstance(feat, dict) or not isinstance(feat.get("title"), str):
            raise DataError(f"{path}, item {item_id}: expected an object with a string 'title'")
    return {str(k): v for k, v in obj.items()}


def first_description(raw: object) -> str:
    """The item's description text: the first element of the stringified list, or ''.

    Upstream stores descriptions as `str(list_of_strings)` and sometimes as `""`.
    """
    if isinstance(raw, list):
        return str(raw[0]).strip() if raw else ""
    if not isinstance(raw, str) or not raw.strip():
        return ""
    text = raw.strip()
    if text.startswith("["):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text  # a plain description that happens to start with '['
        if isinstance(value, list):
            return str(value[0]).strip() if value else ""
    return text


class _CsvRows:
    """A DictReader whose `csv.Error`s (e.g. a field over the csv module's 131,072-character limit,
    usually from an unbalanced quote) become DataErrors naming the file and line."""

    def __init__(self, reader: csv.DictReader, path: Path):
        self.reader, self.path = reader, path

    @property
    def fieldnames(self):
        return self._guard(lambda: self.reader.fieldnames)

    @property
    def line_num(self) -> int:
        return self.reader.line_num

    def __iter__(self):
        return self

    def __next__(self):
        return self._guard(lambda: next(self.reader))

    def _guard(self, fn):
        try:
            return fn()
        except csv.Error as e:
            hint = " (is a quote unbalanced?)" if "field larger than field limit" in str(e) else ""
            raise DataError(f"{self.path}, line {self.reader.line_num + 1}: malformed CSV: {e}{hint}") from None


def _literal_list(text: str, where: str, column: str) -> list:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
        raise DataError(f"{where}column {column}: malformed list literal ({type(e).__name__}): {text[:80]!r}") from None
    if isinstance(value, (int, str)) and column == "history_item_id":
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise DataError(f"{where}column {column}: expected a list literal, got {text[:80]!r}")
    return list(value)


def read_interactions(path: str | Path) -> list[Interaction]:
    """Read a MiniOneRec split CSV with the `csv` module; every row must parse."""
    path = _require_file(path)
    try:
        return _read_interactions(path)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None


def _read_interactions(path: Path) -> list[Interaction]:
    rows = []
    with path.open(encoding="utf-8", newline="") as f:
        reader = _CsvRows(csv.DictReader(f), path)
        header = reader.fieldnames or []
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; header is {header}")
        for r in reader:
            # line_num counts physical lines, so it points at the row even with quoted newlines.
            where = f"{path}, row {len(rows) + 1} (line {reader.line_num}): "
            if None in r or any(r[c] is None for c in CSV_COLUMNS):
                raise DataError(f"{where}expected {len(header)} fields")
            titles = _literal_list(r["history_item_title"], where, "history_item_title")
            ids = _literal_list(r["history_item_id"], where, "history_item_id")
            sids = _literal_list(r["history_item_sid"], where, "history_item_sid")
            if not (len(titles) == len(ids) == len(sids)):
                raise DataError(
                    f"{where}history lists differ in length: {len(titles)} titles, "
                    f"{len(ids)} ids, {len(sids)} SIDs"
                )
            if not sids:
                raise DataError(f"{where}empty history")
            for s in sids:
                split_sid(s, where=f"{where}column history_item_sid: ")
            item_sid = r["item_sid"].strip()
            split_sid(item_sid, where=f"{where}column item_sid: ")
            rows.append(
                Interaction(
                    user_id=r["user_id"],
                    history_titles=tuple(str(t) for t in titles),
                    history_ids=tuple(str(i) for i in ids),
                    history_sids=tuple(sids),
                    item_title=r["item_title"],
                    item_id=r["item_id"].strip(),
                    item_sid=item_sid,
                )
            )
    if not rows:
        raise DataError(f"{path}: no data rows")
    return rows
