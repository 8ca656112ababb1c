"""The tiny from-scratch model for a dataset: a tokenizer learnt on the dataset's own text.

Used by SFT (`sft.init: tiny`) and the demo. Building is deterministic for a seed: the BPE merges
come from the same texts in the same order, the weights from a seeded initialisation.
"""
from __future__ import annotations

from pathlib import Path

from grporec.config import Config
from grporec.data import datasets as D
from grporec.data.load import load_data_catalog, load_item_features, load_split, successor_hints
from grporec.models.policy import build_tiny_policy, save_policy
from grporec.models.tokenizer import check_sid_tokenizer


def tokenizer_corpus(cfg: Config) -> list[str]:
    """Every prompt and completion text the tiny model will see, to learn BPE merges from."""
    catalog = load_data_catalog(cfg.data)
    rows = load_split(cfg.data, "train", catalog)
    parts = [D.SftSidDataset(rows), D.SftTitle2SidDataset(catalog), D.SftSid2TitleDataset(catalog),
             D.SftTitleHistoryDataset(rows), D.SidDataset(rows), D.EvalSidDataset(rows),
             D.SeqTitle2SidDataset(rows, n=0)]
    if cfg.data.item_file is not None:
        parts.append(D.Title2SidDataset(catalog, load_item_features(cfg.data), cfg.data.item_file))
    if cfg.data.prompt_text == "compact":
        parts += [D.SftSidDataset(rows, compact=True), D.SftTitle2SidDataset(catalog, compact=True)]
    if cfg.data.successor_hints:  # only then: the tokenizer of every run without hints stays as it was
        parts.append(D.SftSidDataset(rows, compact=True, hints=successor_hints(cfg.data, catalog, cfg.seed), training=True))
    return [s.prompt + s.completion for ds in parts for s in ds]


def build_tiny_for_data(cfg: Config):
    """(model, tokenizer) sized by `model.tiny`, with the catalog's SID tokens, checked."""
    catalog = load_data_catalog(cfg.data)
    model, tokenizer = build_tiny_policy(tokenizer_corpus(cfg), catalog.sid_tokens, cfg.model.tiny, seed=cfg.seed)
    check_sid_tokenizer(tokenizer, catalog.sids, source="tiny tokenizer")
    return model, tokenizer


def ensure_tiny_model(cfg: Config, out: str | Path) -> Path:
    """Build and save the (untrained) tiny model at `out` unless a model is already there."""
    out = Path(out)
    if (out / "config.json").is_file():
        return out
    model, tokenizer = build_tiny_for_data(cfg)
    save_policy(model, tokenizer, out)
    n = sum(p.numel() for p in model.parameters())
    print(f"[model] built tiny Qwen2 model ({n / 1e6:.2f}M parameters, vocabulary {len(tokenizer)}) in {out}")
    return out
