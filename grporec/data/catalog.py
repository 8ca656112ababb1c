"""The item catalog: item id <-> SID <-> title, the SID token set, and SID collisions.

A generative recommender can only name items by SID, so a hit is SID equality: when several
items share one SID (a collision of the quantizer; 15 SIDs in Office_Products), generating that
SID counts as a hit for any of them. The catalog counts and reports these collisions instead of
hiding them. Item order (used by embedding matrices and SASRec) is ascending numeric item id
when all ids are integers, else the info file's order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from grporec.data.formats import DataError, Interaction, ItemInfo, read_index, read_info, split_sid


@dataclass
class Catalog:
    """All items of one dataset. Build with `Catalog.from_items` or `load_catalog`."""

    items: list[ItemInfo]  # in item order
    index_of_id: dict[str, int] = field(init=False)
    ids_of_sid: dict[str, list[str]] = field(init=False)
    sids: list[str] = field(init=False)  # distinct SIDs, first appearance in item order
    sid_tokens: list[str] = field(init=False)  # sorted, as MiniOneRec adds them to the tokenizer

    def __post_init__(self) -> None:
        self.index_of_id = {it.item_id: i for i, it in enumerate(self.items)}
        self.ids_of_sid = {}
        for it in self.items:
            self.ids_of_sid.setdefault(it.sid, []).append(it.item_id)
        self.sids = list(self.ids_of_sid)
        self.sid_tokens = sorted({t for s in self.sids for t in split_sid(s)})

    @classmethod
    def from_items(cls, items: list[ItemInfo], source: str = "<items>") -> "Catalog":
        """Check ids are unique and order items by id."""
        seen: dict[str, int] = {}
        for n, it in enumerate(items, start=1):
            if it.item_id in seen:
                raise DataError(f"{source}, item {n}: duplicate item id {it.item_id!r} (first as item {seen[it.item_id]})")
            seen[it.item_id] = n
        if all(it.item_id.isdigit() for it in items):
            items = sorted(items, key=lambda it: int(it.item_id))
        return cls(items=list(items))

    # ---- lookups

    def __len__(self) -> int:
        return len(self.items)

    def sid(self, item_id: str) -> str:
        return self.items[self.index_of_id[item_id]].sid

    def title(self, item_id: str) -> str:
        return self.items[self.index_of_id[item_id]].title

    def has_sid(self, sid: str) -> bool:
        return sid in self.ids_of_sid

    @staticmethod
    def is_hit(predicted_sid: str, target_sid: str) -> bool:
        """A hit is SID equality (collided items are indistinguishable by SID)."""
        return predicted_sid == target_sid

    @property
    def collisions(self) -> dict[str, list[str]]:
        """SID -> item ids, for SIDs shared by more than one item."""
        return {s: ids for s, ids in self.ids_of_sid.items() if len(ids) > 1}

    def stats(self) -> dict:
        col = self.collisions
        return {
            "items": len(self.items),
            "distinct_sids": len(self.sids),
            "sid_tokens": len(self.sid_tokens),
            "colliding_sids": len(col),
            "items_in_collisions": sum(len(v) for v in col.values()),
        }

    def describe(self) -> str:
        s = self.stats()
        return (
            f"catalog: {s['items']} items, {s['distinct_sids']} distinct SIDs, "
            f"{s['sid_tokens']} SID tokens, {s['colliding_sids']} SIDs shared by "
            f"{s['items_in_collisions']} items (a hit is SID equality)"
        )

    # ---- consistency with other files

    def check_index(self, index: dict[str, str], source: str) -> None:
        """The index.json must name the same items with the same SIDs as the info file."""
        for item_id, sid in index.items():
            if item_id not in self.index_of_id:
                raise DataError(f"{source}, item {item_id}: not in the catalog (info file)")
            if self.sid(item_id) != sid:
                raise DataError(f"{source}, item {item_id}: SID {sid} but the info file says {self.sid(item_id)}")
        missing = [i for i in self.index_of_id if i not in index]
        if missing:
            raise DataError(f"{source}: {len(missing)} catalog items missing, e.g. item {missing[0]}")

    def check_interactions(self, rows: list[Interaction], source: str) -> None:
        """Every SID a CSV mentions must be a catalog SID."""
        for n, r in enumerate(rows, start=1):
            for col, sids in (("item_sid", (r.item_sid,)), ("history_item_sid", r.history_sids)):
                for s in sids:
                    if s not in self.ids_of_sid:
                        raise DataError(f"{source}, row {n}: column {col}: SID {s} is not in the catalog")


def load_catalog(info_file: str | Path, index_file: str | Path | None = None) -> Catalog:
    """Read the info file (and cross-check the index.json when given)."""
    catalog = Catalog.from_items(read_info(info_file), source=str(info_file))
    if index_file is not None:
        catalog.check_index(read_index(index_file), source=str(index_file))
    return catalog
