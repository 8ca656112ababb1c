"""Shared fixtures and helpers: a tiny synthetic dataset and a tiny model built from it (once per
session), the one-process CPU environment, the tiny loop config, and a parameter snapshot.

A fork's tests use them as the suite does: `from conftest import ENV, tiny_loop_cfg, params`.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers.utils import logging as hf_logging

from transformers import AutoModelForCausalLM

from grporec import dist
from grporec.config import Config, DataConfig, ModelConfig, TinyModelConfig, load_config
from grporec.data import synth
from grporec.data.load import load_data_catalog

hf_logging.disable_progress_bar()
torch.set_num_threads(2)

ROOT = Path(__file__).resolve().parents[1]
ENV = dist.DistEnv(0, 1, 0, torch.device("cpu"))  # one process on the CPU
SHARED = Path(os.environ.get("GRPOREC_SHARED", Path(__file__).resolve().parents[2] / "shared"))
OFFICE = SHARED / "data" / "minionerec" / "Amazon"


def tiny_config(root: Path, model_dir: Path) -> Config:
    p = synth.dataset_paths(root, synth.PRESETS["tiny"].name)
    return Config(
        data=DataConfig(
            info_file=str(p.info), train_file=str(p.train), valid_file=str(p.valid), test_file=str(p.test),
            index_file=str(p.index), item_file=str(p.item),
        ),
        model=ModelConfig(path=str(model_dir), tiny=TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1,
                                                                   intermediate_size=64, tokenizer_vocab_size=400)),
        seed=0,
        output_dir=str(root / "run"),
    )


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tinydata")
    synth.write(synth.PRESETS["tiny"], seed=0, out=root)
    return root


@pytest.fixture(scope="session")
def tiny_cfg(tiny_data, tmp_path_factory) -> Config:
    return tiny_config(tiny_data, tmp_path_factory.mktemp("tinymodel") / "model")


@pytest.fixture(scope="session")
def tiny_catalog(tiny_cfg):
    return load_data_catalog(tiny_cfg.data)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_cfg) -> Path:
    from grporec.models.tiny import ensure_tiny_model

    return ensure_tiny_model(tiny_cfg, tiny_cfg.model.path)


def tiny_loop_cfg(tiny_cfg, model_dir, out, *overrides) -> Config:
    """configs/tiny.yaml pointed at the session's tiny data and a model directory, with overrides."""
    d = tiny_cfg.data
    paths = [f"data.{k}={getattr(d, k)}" for k in ("info_file", "train_file", "valid_file", "test_file", "index_file", "item_file")]
    return load_config(ROOT / "configs" / "tiny.yaml", paths + [f"model.path={model_dir}", f"output_dir={out}", *overrides])


def params(model_dir_or_model) -> dict:
    """A detached copy of a model's (or an HF directory's) parameters."""
    m = model_dir_or_model
    if not isinstance(m, torch.nn.Module):
        m = AutoModelForCausalLM.from_pretrained(str(m), local_files_only=True)
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def reference_params(checkpoint: Path) -> dict:
    """The synced reference a checkpoint holds (in its DCP `state/`), read in one process."""
    import torch.distributed.checkpoint as dcp

    import warnings

    state = {"reference": params(Path(checkpoint) / "policy")}  # same names and shapes as the policy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DCP warns that it reads in one process, as asked
        dcp.load(state, checkpoint_id=str(Path(checkpoint) / "state"), no_dist=True)
    return state["reference"]


def subprocess_env() -> dict:
    """The environment for running grporec as a subprocess: this checkout importable, one CPU thread."""
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")


def step_lines(run_dir: Path) -> list[dict]:
    """The per-step records of a run's metrics.jsonl (evaluations left out); [] before the first step."""
    import json

    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip() and '"loss"' in x]


def run_loop(cfg: Config, ranks: int | None = None, port: int = 29517) -> list[dict]:
    """Run the GRPO loop on `cfg` as a user would: `python -m grporec.loop` (ranks None) or torchrun
    with `ranks` processes; asserts it exits 0 and returns its step records."""
    import subprocess
    import sys

    from grporec.config import dump_config

    out = Path(cfg.output_dir)
    config = out.parent / f"{out.name}.yaml"
    config.write_text(dump_config(cfg))
    launcher = [sys.executable, "-m"] + ([] if ranks is None else
                                         ["torch.distributed.run", f"--nproc_per_node={ranks}", f"--master_port={port}", "-m"])
    r = subprocess.run(launcher + ["grporec.loop", "--config", str(config)], env=subprocess_env(), cwd=out.parent,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return step_lines(out)


def sigterm_after_steps(module: str, config: Path, log: Path, steps: int = 2, cwd: Path | None = None) -> tuple[int, str]:
    """Run `python -m module --config config`, send SIGTERM once `log` (its metrics.jsonl) holds
    `steps` lines, and return (exit status, output)."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", module, "--config", str(config)], env=subprocess_env(), cwd=cwd or config.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while len(step_lines(log.parent)) < steps:
            assert proc.poll() is None, proc.stdout.read()
            assert time.time() < deadline, f"{module} did not start stepping"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, out
