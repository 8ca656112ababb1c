"""The embedded default: `python -m grporec.demo [--config configs/demo.yaml] [key=value ...]`.

On a fresh machine with no files and no network it generates the synthetic dataset named by
`data.synthetic_preset` (if its files are absent) and builds the tiny from-scratch model and
tokenizer (if `model.path` holds none), then prints what it wrote and where.
"""
from __future__ import annotations

import sys
from pathlib import Path

from grporec.config import Config, dump_config, parse_cli
from grporec.data import datasets as D
from grporec.data import synth
from grporec.data.load import load_data_catalog, load_item_features, load_split
from grporec.models.policy import build_tiny_policy, save_policy
from grporec.models.tokenizer import check_sid_tokenizer

DEFAULT_CONFIG = "configs/demo.yaml"


def ensure_synthetic_data(cfg: Config) -> None:
    """Write the configured synthetic dataset unless its info file already exists."""
    d = cfg.data
    if d.synthetic_preset is None or Path(d.info_file).is_file():
        return
    if d.synthetic_preset not in synth.PRESETS:
        raise SystemExit(f"data.synthetic_preset: unknown preset {d.synthetic_preset!r}; choose from {sorted(synth.PRESETS)}")
    root = d.synthetic_root or str(Path(d.info_file).parent.parent)
    paths = synth.write(synth.PRESETS[d.synthetic_preset], d.synthetic_seed, root)
    print(f"[data] generated synthetic '{d.synthetic_preset}' dataset (seed {d.synthetic_seed}) in {root}")
    if Path(d.info_file) != paths.info:
        print(f"[data] warning: data.info_file is {d.info_file} but the preset wrote {paths.info}")


def tokenizer_corpus(cfg: Config) -> list[str]:
    """Every prompt and completion text the tiny model will see, to learn BPE merges from."""
    catalog = load_data_catalog(cfg.data)
    rows = load_split(cfg.data, "train", catalog)
    parts = [D.SftSidDataset(rows), D.SftTitle2SidDataset(catalog), D.SftSid2TitleDataset(catalog),
             D.SftTitleHistoryDataset(rows), D.SidDataset(rows), D.EvalSidDataset(rows),
             D.SeqTitle2SidDataset(rows, n=0)]
    if cfg.data.item_file is not None:
        parts.append(D.Title2SidDataset(catalog, load_item_features(cfg.data), cfg.data.item_file))
    return [s.prompt + s.completion for ds in parts for s in ds]


def ensure_tiny_model(cfg: Config, out: str | Path) -> Path:
    """Build and save the tiny model and tokenizer at `out` unless a model is already there."""
    out = Path(out)
    if (out / "config.json").is_file():
        return out
    catalog = load_data_catalog(cfg.data)
    model, tokenizer = build_tiny_policy(tokenizer_corpus(cfg), catalog.sid_tokens, cfg.model.tiny, seed=cfg.seed)
    check_sid_tokenizer(tokenizer, catalog.sids, source="tiny tokenizer")
    save_policy(model, tokenizer, out)
    n = sum(p.numel() for p in model.parameters())
    print(f"[model] built tiny Qwen2 model ({n / 1e6:.2f}M parameters, vocabulary {len(tokenizer)}) in {out}")
    return out


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" not in argv:
        argv = ["--config", DEFAULT_CONFIG] + argv
    cfg = parse_cli(argv, Config, prog="python -m grporec.demo")
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(cfg.output_dir) / "config.yaml").write_text(dump_config(cfg))
    ensure_synthetic_data(cfg)
    catalog = load_data_catalog(cfg.data)
    print(f"[data] {catalog.describe()}")
    ensure_tiny_model(cfg, cfg.model.path)
    print(f"[done] data: {Path(cfg.data.info_file).parent.parent}  model: {cfg.model.path}  run: {cfg.output_dir}")


if __name__ == "__main__":
    main()
