"""Derive a training CSV from a valid CSV: `python -m grporec.data.derive --valid V.csv --out T.csv`.

For datasets whose upstream train split is not available (Office_Products here): each valid row,
plus every prefix of its history followed by the next history item, deduplicated. Valid targets
all precede test targets in time, so evaluating on test leaks nothing; never derive from test.

`--holdout H.csv` keeps a validation split for choices: each user's latest valid row (the last
of the user's rows, which are chronological sliding windows) goes to H.csv and not to the
training rows, so that recipes can be chosen on targets the model never trained on, and test
stays for the final figures. The training rows are then every earlier transition.
"""
from __future__ import annotations

import argparse
import csv
import sys
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


def split_holdout(rows: list[Interaction]) -> tuple[list[Interaction], list[Interaction]]:
    """(training rows, held-out rows): each user's last row is held out, the rest derived.

    A user's rows are consecutive sliding windows in file order (each row's history ends with the
    previous row's target); the derived rows never include a held-out row itself.
    """
    last: dict[str, Interaction] = {}
    for r in rows:
        last[r.user_id] = r
    held = list(last.values())
    held_keys = {(r.user_id, r.history_ids, r.item_id) for r in held}
    train = [r for r in derive_rows(rows) if (r.user_id, r.history_ids, r.item_id) not in held_keys]
    return train, held


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


def main(argv: list[str] | None = None, prog: str = "python -m grporec.data.derive") -> int:
    from grporec import commandline as cli

    def body(args_list):
        ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0],
                                     epilog="example: python -m grporec.data.derive --valid V.csv --out train.csv --holdout valid-holdout.csv")
        ap.add_argument("--valid", required=True, help="the valid CSV (MiniOneRec format) to derive from")
        ap.add_argument("--out", required=True, help="the training CSV to write")
        ap.add_argument("--holdout", help="also hold out each user's latest valid row and write them here")
        ap.add_argument("--debug", action="store_true", help="show the full traceback of an error")
        args = ap.parse_args(args_list)
        outs = [args.out] + ([args.holdout] if args.holdout else [])
        if any(Path(o).resolve() == Path(args.valid).resolve() for o in outs) or len(set(outs)) < len(outs):
            raise cli.UsageError("--out, --holdout and --valid must be three different files")
        rows = read_interactions(args.valid)
        if args.holdout:
            derived, held = split_holdout(rows)
            write_csv(held, args.holdout)
            print(f"held out {len(held)} rows (each user's latest) -> {args.holdout}")
        else:
            derived = derive_rows(rows)
        write_csv(derived, args.out)
        print(f"derived {len(derived)} training rows from {len(rows)} valid rows -> {args.out}")

    return cli.run(body, argv)


if __name__ == "__main__":
    sys.exit(main())
