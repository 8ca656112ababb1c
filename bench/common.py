"""What the benchmarks share: their model/data command-line options, data and model builders.

Weights are random (speed does not depend on them); the data are the `industrial-like` synthetic
preset or the real Office_Products files in ../shared.
"""
from __future__ import annotations

import argparse
import ctypes
import sys
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM
from transformers.utils import logging as hf_logging

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # after, never before, a checkout a benchmark chose
    sys.path.append(str(Path(__file__).resolve().parents[1]))   # (grpo_step.py --code: the old code of --compare)
from grporec.config import TinyModelConfig  # noqa: E402
from grporec.data import datasets as D  # noqa: E402
from grporec.data import synth  # noqa: E402
from grporec.data.catalog import load_catalog  # noqa: E402
from grporec.data.formats import read_interactions  # noqa: E402
from grporec.models.policy import build_tiny_policy, extend_policy  # noqa: E402
from grporec.models.tokenizer import train_tiny_tokenizer  # noqa: E402

OFFICE = Path(__file__).resolve().parents[2] / "shared" / "data" / "minionerec" / "Amazon"
QWEN05 = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
              num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0, tie_word_embeddings=True)
QWEN15 = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
              num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0, tie_word_embeddings=True)
# The 0.5B shape's depth and heads at tiny widths (head size 4): its host cost (ops per step) with negligible compute.
NARROW = dict(QWEN05, hidden_size=56, intermediate_size=64)
SHAPES = {"qwen2.5-0.5b": QWEN05, "qwen2.5-1.5b": QWEN15, "narrow": NARROW}  # random weights


def model_arguments(description: str) -> argparse.ArgumentParser:
    """A parser with the options every benchmark takes (data, model shape, device, dtype, threads)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data", choices=["industrial-like", "office"], default="industrial-like")
    ap.add_argument("--shape", choices=["tiny", *SHAPES], default="tiny", help="narrow: the 0.5B depth and heads, tiny widths")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per method (median reported)")
    return ap


def setup(args) -> tuple[torch.device, torch.dtype]:
    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    return torch.device(args.device), getattr(torch, args.dtype)


def load_data(which: str, tmp: Path):
    if which == "office":
        if not OFFICE.is_dir():
            raise SystemExit(f"--data office needs {OFFICE}")
        catalog = load_catalog(OFFICE / "info" / "Office_Products_5_2016-10-2018-11.txt")
        rows = read_interactions(OFFICE / "test" / "Office_Products_5_2016-10-2018-11.csv")
    else:
        paths = synth.write(synth.PRESETS["industrial-like"], 0, tmp / "data")
        catalog = load_catalog(paths.info)
        rows = read_interactions(paths.test)
    return catalog, rows


def build_model(shape: str, catalog, rows, dtype, device, tiny: TinyModelConfig | None = None):
    """(model, tokenizer) of a shape, random weights; `tiny`: the tiny model's sizes (default TinyModelConfig())."""
    texts = [s.prompt + s.completion for s in D.EvalSidDataset(rows)] + [it.title for it in catalog.items]
    if shape == "tiny":
        model, tok = build_tiny_policy(texts, catalog.sid_tokens, tiny or TinyModelConfig(), seed=0)
    else:  # a Qwen2.5 architecture with its real vocabulary, random weights; a stand-in BPE tokenizer (speed only)
        tok = train_tiny_tokenizer(texts, [], vocab_size=2000)
        torch.manual_seed(0)
        vocab = 2000 if shape == "narrow" else 151936  # narrow: no 152k-wide head, whose FLOPs would not be negligible
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, **SHAPES[shape]))
        extend_policy(model, tok, catalog.sid_tokens)
        model.resize_token_embeddings(vocab + len(catalog.sid_tokens))
    return model.to(device=device, dtype=dtype).eval(), tok


class PhasePeak:
    """Peak memory (GiB) of each phase: CUDA allocated bytes, or the process's resident set on a CPU."""

    def __init__(self, device: torch.device):
        self.device, self.peaks = device, {}
        self._libc = ctypes.CDLL("libc.so.6") if device.type == "cpu" else None

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self._libc.malloc_trim(0)  # give freed memory back, so that the reset starts from what is in use
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set

    def stop(self, phase: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / 2**30
        else:
            kib = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                       if line.startswith("VmHWM:"))
            peak = kib / 2**20
        self.peaks[phase] = max(self.peaks.get(phase, 0.0), peak)

    def wrap(self, fn, phase: str):
        def measured(*args, **kwargs):
            self.start()
            try:
                return fn(*args, **kwargs)
            finally:
                self.stop(phase)
        return measured
