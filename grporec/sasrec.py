"""Train and evaluate the SASRec baseline: `python -m grporec.sasrec train|eval --config FILE`.

Trains on `data.train_file` (one example per CSV row: history -> next item), early-stops on
valid NDCG@10, keeps the best weights in `sasrec.path` (default `<output_dir>/sasrec`), and
evaluates HR@K / NDCG@K over the full catalog on the test split. Ranking is by SID, like the
generative models: each SID scores as its best item, and a hit is SID equality.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from grporec import commandline as cli
from grporec.config import Config, SasrecConfig
from grporec.data.catalog import Catalog
from grporec.data.formats import DataError, Interaction
from grporec.data.load import load_data_catalog, load_split
from grporec.evaluate import format_metrics
from grporec.metrics import DEFAULT_KS, bucket_metrics, ranking_metrics, seen_flags, train_transitions
from grporec.models.sasrec import SASRec, SasrecShape, encode_histories, sid_scores


def examples(rows: list[Interaction], catalog: Catalog, source: str = "<rows>") -> tuple[list[list[int]], list[int]]:
    """(item-index histories, target item indices) for each row."""
    hist, target = [], []
    for n, r in enumerate(rows, start=1):
        try:
            hist.append([catalog.index_of_id[i] for i in r.history_ids])
            target.append(catalog.index_of_id[r.item_id])
        except KeyError as e:
            raise DataError(f"{source}, row {n}: item id {e.args[0]} is not in the catalog") from None
    return hist, target


@torch.no_grad()
def evaluate_sasrec(model: SASRec, catalog: Catalog, rows: list[Interaction], ks=DEFAULT_KS, batch_size: int = 512,
                    transitions: set | None = None, with_ranks: bool = False) -> dict:
    """HR@K / NDCG@K at the SID level over the whole catalog; with the training split's
    `transitions`, the same on the seen and unseen rows (`metrics.bucket_metrics`); with
    `with_ranks`, each row's 0-based target rank too (`ranks`, for paired differences)."""
    model.eval()
    device = next(model.parameters()).device
    hist, _ = examples(rows, catalog)
    sid_index = {s: k for k, s in enumerate(catalog.sids)}
    item_sid = torch.tensor([sid_index[it.sid] for it in catalog.items], device=device)
    target_sid = torch.tensor([sid_index[r.item_sid] for r in rows], device=device)
    ranks = []
    for i in range(0, len(rows), batch_size):
        x = encode_histories(hist[i:i + batch_size], model.shape.max_len).to(device)
        s = sid_scores(model(x).float(), item_sid, len(sid_index))  # [b, S]
        t = s.gather(1, target_sid[i:i + batch_size, None])
        ranks += (s > t).sum(1).tolist()  # 0-based rank of the target SID
    out = {**ranking_metrics(ranks, ks), "rows": len(rows)}
    if transitions is not None:
        out.update(bucket_metrics(ranks, seen_flags([(r.history_sids[-1], r.item_sid) for r in rows], transitions), ks))
    return {**out, "ranks": ranks} if with_ranks else out


def train_sasrec(cfg: SasrecConfig, catalog: Catalog, train: list[Interaction], valid: list[Interaction] | None,
                 seed: int = 0, device: str = "cpu", progress: bool = True) -> tuple[SASRec, dict]:
    """Train with AdamW and full-softmax cross-entropy; keep the epoch with the best valid NDCG@10.

    progress: a bar on a terminal, one line per epoch otherwise (False: silent).
    """
    torch.manual_seed(seed)
    shape = SasrecShape(len(catalog), cfg.hidden, cfg.blocks, cfg.heads, cfg.dropout, cfg.max_len)
    model = SASRec(shape).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    hist, target = examples(train, catalog)
    x_all = encode_histories(hist, cfg.max_len)
    y_all = torch.tensor(target)
    gen = torch.Generator().manual_seed(seed)
    best, best_state, best_epoch, history = -1.0, None, 0, []
    tty = sys.stderr.isatty()
    bar = tqdm(range(cfg.epochs), desc="sasrec", disable=not (progress and tty))
    for epoch in bar:
        model.train()
        order = torch.randperm(len(y_all), generator=gen)
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            loss = torch.nn.functional.cross_entropy(model(x_all[idx].to(device)), y_all[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        record = {"epoch": epoch + 1, "train_loss": total / len(order)}
        if valid is not None:
            record.update({f"valid/{k}": v for k, v in evaluate_sasrec(model, catalog, valid, ks=(10,)).items()})
            score = record["valid/ndcg@10"]
        else:
            score = -record["train_loss"]
        history.append(record)
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", ndcg10=f"{record.get('valid/ndcg@10', float('nan')):.4f}")
        if progress and not tty:
            print(f"[sasrec] epoch {epoch + 1}: train loss {record['train_loss']:.4f}"
                  + (f", valid NDCG@10 {record['valid/ndcg@10']:.4f}" if valid is not None else ""), flush=True)
        if score > best:
            best, best_state, best_epoch = score, copy.deepcopy(model.state_dict()), epoch + 1
        elif epoch + 1 - best_epoch >= cfg.patience:
            break
    model.load_state_dict(best_state)
    return model.eval(), {"best_epoch": best_epoch, "history": history}


def main(argv: list[str] | None = None, prog: str = "python -m grporec.sasrec") -> int:
    def body(args_list):
        ap = argparse.ArgumentParser(
            prog=prog, description="Train and/or evaluate the SASRec baseline (ranks every SID of the catalog).",
            epilog="example: python -m grporec.sasrec train --config configs/demo.yaml sasrec.epochs=20",
            formatter_class=argparse.RawDescriptionHelpFormatter)
        ap.add_argument("command", choices=["train", "eval"], help="train (then evaluate on test), or only evaluate")
        cli.add_config_arguments(ap)
        args, cfg = cli.parse_config(ap, args_list, Config)
        run_sasrec(args.command, cfg)

    return cli.run(body, argv)


def train_and_save(cfg: Config, catalog, out: Path, device: str) -> dict:
    """Train cfg.sasrec on the training split (valid for early stopping, when there is one), seeded by
    cfg.seed; save it and its training log in `out`; the log."""
    train = load_split(cfg.data, "train", catalog)
    valid = load_split(cfg.data, "valid", catalog) if cfg.data.valid_file else None
    model, info = train_sasrec(cfg.sasrec, catalog, train, valid, seed=cfg.seed, device=device, progress=cfg.train.progress)
    model.save(out)
    (out / "train_log.json").write_text(json.dumps(info, indent=2))
    return info


def run_sasrec(command: str, cfg: Config) -> None:
    out = Path(cfg.sasrec.path or Path(cfg.output_dir) / "sasrec")
    catalog = load_data_catalog(cfg.data)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if command == "train":
        info = train_and_save(cfg, catalog, out, device)
        print(f"[sasrec] best epoch {info['best_epoch']}; saved to {out}")
    model = SASRec.load(out, device)
    transitions = train_transitions(load_split(cfg.data, "train", catalog)) if cfg.data.train_file else None
    metrics = evaluate_sasrec(model, catalog, load_split(cfg.data, "test", catalog), ks=tuple(cfg.eval.ks), transitions=transitions)
    (out / "test_metrics.json").write_text(json.dumps(metrics, indent=2))
    print("[sasrec] test " + format_metrics(metrics))


if __name__ == "__main__":
    sys.exit(main())
