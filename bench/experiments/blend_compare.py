"""Is the blend better from a GRPO model than from its SFT start? Paired per-row differences of
bench/blend.py results (the `chosen` a's ranks), one SFT-start file against one file per GRPO seed.

    python bench/experiments/blend_compare.py --sft bench/results/blend_office_minionerec_sft.json \
        --grpo bench/results/blend_office_postfix_grpo_seed{0,1,2}.json --out bench/results/blend_office_postfix_grpo_3seeds.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from grporec.metrics import paired_difference, paired_hr_difference  # noqa: E402

KEYS = ("ndcg@10", "hr@10", "hr@20", "ndcg@10_seen", "ndcg@10_unseen")
DIFFS = (("ndcg@10", paired_difference, 10), ("hr@10", paired_hr_difference, 10), ("hr@20", paired_hr_difference, 20))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sft", required=True)
    ap.add_argument("--grpo", nargs="+", required=True, help="one bench/blend.py file per GRPO seed, in seed order")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    sft = json.loads(Path(args.sft).read_text())["splits"]
    per = [json.loads(Path(f).read_text())["splits"] for f in args.grpo]
    out = {"sft": args.sft, "grpo": args.grpo, "rows": {}, "differences_blend_minus_blend_sft": {}}
    for split in ("valid", "test"):
        out["rows"].setdefault("blend", {})[split] = {k: [p[split]["chosen"][k] for p in per] for k in KEYS}
        out["rows"]["blend"][split]["chosen_a"] = [p[split]["chosen_a"] for p in per]
        out["rows"].setdefault("blend_sft", {})[split] = {k: [sft[split]["chosen"][k]] for k in KEYS}
        diffs = {}
        for name, fn, k in DIFFS:
            vals = [fn(sft[split]["chosen"]["ranks"], p[split]["chosen"]["ranks"], k) for p in per]
            diffs[name] = {"per_seed": [{"diff": d, "se": se} for d, se in vals], "mean": statistics.mean(d for d, _ in vals)}
            print(f"{split} {name}: blend - blend_sft per seed " + " ".join(f"{d:+.4f}+-{se:.4f}" for d, se in vals))
        out["differences_blend_minus_blend_sft"][split] = diffs
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
