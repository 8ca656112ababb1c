"""Every stage's record and training curve of a recipe's seed runs, in one JSON that outlives the models.

`bench/quality.py --recipe` reports each stage's chosen model; this keeps how the stages got there: per seed
and stage, `stage.json` (valid and test metrics, seconds) and each evaluation logged during training (SFT:
valid loss, NDCG@10 and its seen / unseen buckets; GRPO: the loop's eval events), read from
`<output_dir>/seeds/seed<k>/<stage>/`.

    python bench/stage_curves.py --config configs/office-tiny-lastitem-bf16.yaml --seeds 0 1 2 \
        --out bench/results/lastitem_bf16_stages.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from grporec.config import load_config  # noqa: E402

EVAL_PREFIX = "eval/"


def stage_curve(stage_dir: Path) -> list[dict]:
    """The evaluation events of one stage's metrics.jsonl, in step order, without their `eval/` prefix."""
    path = stage_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    events = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        measured = {k[len(EVAL_PREFIX):]: v for k, v in row.items() if k.startswith(EVAL_PREFIX)}
        if measured:
            events.append({"step": row["step"], **measured})
    return events


def gather(output_dir: Path, stages: list[str], seeds: list[int]) -> dict:
    out = {}
    for seed in seeds:
        d = output_dir / "seeds" / f"seed{seed}"
        out[str(seed)] = {}
        for name in stages:
            record = d / name / "stage.json"
            out[str(seed)][name] = {"record": json.loads(record.read_text()) if record.is_file() else None,
                                    "curve": stage_curve(d / name)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    stages = [s.name for s in cfg.recipe if s.kind in ("sft", "grpo")]
    result = {"config": args.config, "output_dir": cfg.output_dir, "seeds": args.seeds,
              "stages": gather(Path(cfg.output_dir), stages, args.seeds)}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for seed, per in result["stages"].items():
        for name, s in per.items():
            test = (s["record"] or {}).get("test", {}).get("ndcg@10")
            print(f"seed {seed} {name}: {len(s['curve'])} evaluations, test NDCG@10 {test if test is None else f'{test:.4f}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
