"""Loading, building and saving the policy: an HF causal LM and its tokenizer, always local.

`load_policy` reads a local directory only (`local_files_only=True`): no code path reaches a
model hub, and a missing directory is a `PolicyError` that says how to make one.
`build_tiny_policy` makes a small Qwen2-architecture model and a tokenizer trained on the
dataset's own text, from scratch, and saves both in HF format.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM

from grporec.config import TinyModelConfig
from grporec.errors import UserError
from grporec.models.tokenizer import add_sid_tokens, train_tiny_tokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
def how_to_make(key: str) -> str:
    """What to do about a bad model directory, naming the setting that chose it."""
    return (f"point {key} at a local HF model directory (config.json, safetensors, tokenizer), "
            "for example an SFT checkpoint made by `python -m grporec.sft --config FILE`, "
            "or build the tiny model with `python -m grporec.demo`")


class PolicyError(UserError):
    """The model directory is missing or does not hold a usable model."""


def load_tokenizer(path: str | Path, key: str = "model.path") -> PreTrainedTokenizerBase:
    path = model_dir(path, key)
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_policy(path: str | Path, dtype: str = "float32", device: str | torch.device = "cpu",
                key: str = "model.path") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load (model, tokenizer) from a local HF directory.

    Args:
        path: directory with config.json, weights (safetensors) and tokenizer files.
        dtype: "float32", "bfloat16" or "float16".
        device: where to put the model.
        key: the setting that named the directory (model.path, sft.init, --model), for errors.
    """
    path = model_dir(path, key)
    tokenizer = load_tokenizer(path, key)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=DTYPES[dtype], local_files_only=True)
    except (OSError, ValueError) as e:
        raise PolicyError(f"{path}: could not load a causal LM ({e}); {how_to_make(key)}") from None
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        raise PolicyError(
            f"{path}: the tokenizer has {len(tokenizer)} tokens but the model's embedding only "
            f"{model.get_input_embeddings().num_embeddings}; resize the embeddings after adding SID tokens"
        )
    return model.to(device), tokenizer


def model_dir(path: str | Path, key: str = "model.path") -> Path:
    """The HF model directory `path` names: itself, or a GRPO checkpoint's `policy/` when `path` is
    the checkpoint (`<run>/checkpoints/step-N`); a PolicyError naming `key` otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise PolicyError(f"model directory not found: {path}; {how_to_make(key)}")
    if not (path / "config.json").is_file():
        if (path / "policy" / "config.json").is_file():
            return path / "policy"  # a checkpoint: its model is policy/
        raise PolicyError(f"{path} is not a model directory (no config.json, and no policy/ of a GRPO checkpoint in it); "
                          f"{how_to_make(key)}")
    return path


def extend_policy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sid_tokens: list[str],
                  pad_to_multiple_of: int = 1) -> list[str]:
    """Add missing SID tokens to the tokenizer and resize the model's embeddings to match.

    With `pad_to_multiple_of` > 1 a resized vocabulary gets rows up to the next multiple (faster
    matmuls on GPUs). Rows beyond the tokenizer are no tokens: the SID trie never allows them, and
    they are listed in the generation config's `suppress_tokens` so HF `generate` never emits them.
    """
    added = add_sid_tokens(tokenizer, sid_tokens)
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=pad_to_multiple_of if pad_to_multiple_of > 1 else None)
    rows = model.get_input_embeddings().num_embeddings
    if rows > len(tokenizer):
        gen = model.generation_config
        gen.suppress_tokens = sorted(set(gen.suppress_tokens or []) | set(range(len(tokenizer), rows)))
    return added


def build_tiny_policy(
    texts: Iterable[str], sid_tokens: list[str], cfg: TinyModelConfig, seed: int = 0
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A from-scratch Qwen2-architecture model and a tokenizer learnt from `texts`.

    Args:
        texts: the dataset's own text (prompts, titles, descriptions) to learn BPE merges from.
        sid_tokens: the catalog's SID tokens, added whole.
        cfg: model shape.
        seed: seeds the weight initialisation.
    """
    tokenizer = train_tiny_tokenizer(texts, sid_tokens, vocab_size=cfg.tokenizer_vocab_size)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    # Every later stage (GRPO, evaluation, resume, recommend) reads the tokenizer from disk, where
    # transformers picks the class from the model type (Qwen2Tokenizer, with Qwen2's pre-tokenizer
    # pattern), and that splits text differently from the object just trained (" \n" before a
    # word is one token there, two here). Train with what they will read.
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        config.save_pretrained(tmp)
        tokenizer = load_tokenizer(tmp, "the tiny model")
    return model, tokenizer


def save_policy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out: str | Path) -> None:
    """Save in HF format (safetensors + config + tokenizer)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
