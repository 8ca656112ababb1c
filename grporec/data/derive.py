"""Derive a training CSV from a valid CSV: `python -m grporec.data.derive --valid V.csv --out T.csv`.

For datasets whose upstream train split is not available (Office_Products here): each valid row,
plus every prefix of its history followed by the next history item, deduplicated. Valid targets
all precede test targets in time, so evaluating on test leaks nothing; never derive from test.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

from grporec.data.formats import CSV_COLUMNS, Interaction, read_interactions


def derive_rows(rows: list[Interaction]) -> list[Interaction]:
    out, seen = [], set()
    for r in rows:
        n = len(r.history_ids)
        candidates = [
            Interaction(r.user_id, r.history_titles[:k], r.history_ids[:k], r.history_sids[:k],
                        r.history_titles[k], r.history_ids[k], r.history_sids[k])
            for k in range(1, n)
        ] + [r]
        for c in candidates:
            key = (c.user_id, c.history_ids, c.item_id)
            if key not in seen:
                seen.add(key)
                out.append(c)
    return out


def write_csv(rows: list[Interaction], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for r in rows:
            ids = [int(i) if i.isdigit() else i for i in r.history_ids]
            w.writerow([r.user_id, str(list(r.history_titles)), r.item_title, str(ids), r.item_id,
                        str(list(r.history_sids)), r.item_sid])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m grporec.data.derive", description=__doc__.split("\n")[0])
    ap.add_argument("--valid", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if Path(args.out).resolve() == Path(args.valid).resolve():
        raise SystemExit("--out must differ from --valid")
    rows = read_interactions(args.valid)
    derived = derive_rows(rows)
    write_csv(derived, args.out)
    print(f"derived {len(derived)} training rows from {len(rows)} valid rows -> {args.out}")


if __name__ == "__main__":
    main()
