"""The blended recommender as a recipe stage (`kind: blend`): its settings fitted on valid and kept.

A blend stage takes the recipe's last generative model and, when the recipe has a sasrec stage, its
SASRec (grporec.blend: q ~ p_model^(1 - w) p_SASRec^w, p = (c(last -> i) + a q) / (c(last) + a)).
It scores each valid row's candidates once, ranks them by every (a, w) of `blend.a_grid` x
`blend.w_grid` (w only with a SASRec), keeps the pair with the best valid NDCG@10 and writes it to
`<stage>/blend.json` with the model and SASRec it belongs to. That directory is the recommender the
recipe ships: `grporec eval|recommend --blend DIR` rank by it.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from grporec import dist
from grporec.blend import Blend, blend_rank, score_candidates
from grporec.config import Config
from grporec.data.load import load_data_catalog, load_split
from grporec.decode import build_catalog_trie
from grporec.errors import SettingsError
from grporec.evaluate import eval_samples, score, split_transitions
from grporec.metrics import transition_counts

BLEND_FILE = "blend.json"
SELECT_ON = "ndcg@10"


def read_blend(blend_dir: str | Path) -> dict:
    """The settings a blend stage kept: {model, sasrec (or null), a, w, ...}; a clear error naming
    the file when it is missing or incomplete."""
    path = Path(blend_dir) / BLEND_FILE
    if not path.is_file():
        raise SettingsError(f"--blend {blend_dir}: no {BLEND_FILE} there; a recipe's blend stage writes it "
                            "(kind: blend, configs/office-tiny.yaml)")
    try:
        kept = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SettingsError(f"{path}: not valid JSON ({e})") from None
    missing = [k for k in ("model", "sasrec", "a", "w") if k not in kept]
    if missing:
        raise SettingsError(f"{path}: lacks {missing}; fit the blend again (its recipe stage)")
    return kept


def load_blend(cfg: Config, kept: dict, catalog, device) -> Blend:
    """The `Blend` of kept settings: the training split's counts and, where kept, the SASRec on `device`."""
    sasrec = None
    if kept["sasrec"] is not None:
        from grporec.models.sasrec import SASRec
        from grporec.rewards.cf import SasrecScorer

        sasrec = SasrecScorer(SASRec.load(kept["sasrec"], device), catalog)
    return Blend(kept["a"], transition_counts(load_split(cfg.data, "train", catalog)), kept["w"], sasrec)


def scored_split(cfg: Config, model_dir: str, blend: Blend, split: str, env: dist.DistEnv):
    """(each row's scored candidates, the rows' samples, the trie's SID names) of one split."""
    from grporec.models.format import format_for
    from grporec.models.policy import load_policy

    catalog = load_data_catalog(cfg.data)
    samples = eval_samples(cfg, load_split(cfg.data, split, catalog), cfg.eval.max_rows)
    model, tokenizer = load_policy(model_dir, cfg.model.dtype, env.device, key="model.path")
    fmt = format_for(tokenizer, cfg.data.prompt_format, model_dir, key="model.path", max_prompt_tokens=cfg.data.max_prompt_tokens)
    trie = build_catalog_trie(fmt, catalog.sids, env.device)
    with torch.no_grad(), dist.autocast(env, cfg.train):
        scored = score_candidates(model.eval(), fmt, trie, samples, blend.follows, cfg.eval.test_beams, cfg.eval.batch_prompts,
                                  env.device, sasrec=blend.sasrec)
    return scored, samples, trie.names


def fit_blend(scored, samples, names, beams: int, catalog, transitions, pairs: list[tuple[float, float]], ks) -> tuple[tuple, dict]:
    """((a, w) with the best NDCG@10 over these rows, its metrics with per-row ranks); ties: the
    earlier pair."""
    best, best_m = None, None
    for a, w in pairs:
        m = score(blend_rank(scored, names, a, beams, w), samples, beams, catalog, ks, transitions)
        if best_m is None or m[SELECT_ON] > best_m[SELECT_ON]:
            best, best_m = (a, w), m
    return best, best_m


def fit_blend_stage(cfg: Config, out: Path, env: dist.DistEnv) -> Path:
    """Fit (a, w) of the blend of cfg.model.path (and reward.sasrec_path, the recipe's SASRec, when
    set) on valid; write out/blend.json (with the valid figures and ranks) and return `out`."""
    if 10 not in cfg.eval.ks or cfg.eval.test_beams < 10:
        raise SettingsError(f"a blend stage picks (a, w) by valid NDCG@10: eval.ks must hold 10 and eval.test_beams be >= 10 "
                            f"(got {cfg.eval.ks}, {cfg.eval.test_beams})")
    catalog = load_data_catalog(cfg.data)
    sasrec = cfg.reward.sasrec_path
    ws = cfg.blend.w_grid if sasrec else [0.0]
    probe = load_blend(cfg, {"sasrec": sasrec, "a": 1.0, "w": 0.0}, catalog, env.device)  # counts and SASRec, loaded once
    scored, samples, names = scored_split(cfg, cfg.model.path, probe, "valid", env)
    pairs = [(a, w) for w in ws for a in cfg.blend.a_grid]
    (a, w), m = fit_blend(scored, samples, names, cfg.eval.test_beams, catalog, split_transitions(cfg, catalog), pairs,
                          tuple(cfg.eval.ks))
    out.mkdir(parents=True, exist_ok=True)
    kept = {"model": str(cfg.model.path), "sasrec": sasrec, "a": a, "w": w, "beams": cfg.eval.test_beams,
            "fitted_on": "valid", "select_on": SELECT_ON, "pairs": len(pairs), "valid": m}
    (out / BLEND_FILE).write_text(json.dumps(kept, indent=1))
    print(f"[blend] a={a:g} w={w:g}: valid {SELECT_ON} {m[SELECT_ON]:.4f} (best of {len(pairs)} pairs)", flush=True)
    return out


def score_blend_stage(cfg: Config, blend_dir: Path, split: str, env: dist.DistEnv) -> dict:
    """A blend stage's metrics (with per-row ranks) on a split: valid's from its fit, test's scored now."""
    kept = read_blend(blend_dir)
    if split == kept["fitted_on"]:
        return kept[split]
    catalog = load_data_catalog(cfg.data)
    scored, samples, names = scored_split(cfg, kept["model"], load_blend(cfg, kept, catalog, env.device), split, env)
    return score(blend_rank(scored, names, kept["a"], cfg.eval.test_beams, kept["w"]), samples, cfg.eval.test_beams, catalog,
                 tuple(cfg.eval.ks), split_transitions(cfg, catalog))


__all__ = ["BLEND_FILE", "fit_blend", "fit_blend_stage", "load_blend", "read_blend", "score_blend_stage"]
