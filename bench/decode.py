"""Decoder benchmark: grporec's constrained beam search vs HF generate with a Python-loop processor.

    python bench/decode.py                       # tiny model, industrial-like prompts, CPU
    python bench/decode.py --data office         # real Office_Products prompts (../shared)
    python bench/decode.py --shape qwen2.5-0.5b --device cuda --dtype bfloat16

Runs side by side in one process, on one model and one set of prompts:
  (a) grporec beam search (trie gather, one prefill per prompt, prompt KV shared by each group);
  (a2) the same with the prompt KV copied to every beam instead of shared (where (a) gets its
      speed: the trie, or the cache);
  (b) HF `generate(num_beams=G, num_return_sequences=G, do_sample=False, length_penalty=0.0)`
      with the usual prefix-constrained logits processor: a Python loop over every batch x beam
      row, a dict lookup of the row's prefix and a full-vocabulary mask (a row whose prefix has no
      continuation is left unconstrained, as such processors do);
  (c) grporec beam search with the mask disabled (what masking costs);
  (d) grporec constrained sampling;
  (e) the bare forward passes the search needs, timed alone: one prefill of the B prompts and
      L-1 single-token steps of B*G rows over a KV cache of the prompt (the floor for any decoder).
With --profile, one call of (a) runs under torch.profiler and the host-device synchronisations
it makes (cudaStreamSynchronize / cudaDeviceSynchronize / device-to-host copies) are counted.
Prints a table and writes JSON (--out). Weights are random: speed does not depend on them.
"""
from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import DynamicCache, LogitsProcessor, LogitsProcessorList

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import D, build_model, load_data, model_arguments, setup  # noqa: E402
from grporec.decode import beam_search, build_catalog_trie, left_pad, sample  # noqa: E402
from grporec.models.format import build_format  # noqa: E402
from grporec.models.inputs import forward_kwargs, positions  # noqa: E402

class PrefixConstrainedProcessor(LogitsProcessor):
    """The usual processor: per row, look the generated prefix up in a dict, mask the vocabulary."""

    def __init__(self, allowed: dict[tuple, list[int]], prompt_len: int):
        self.allowed, self.prompt_len = allowed, prompt_len

    def __call__(self, input_ids, scores):
        mask = torch.full_like(scores, float("-inf"))
        for row in range(input_ids.shape[0]):  # one host sync per row per step
            prefix = tuple(input_ids[row, self.prompt_len:].tolist())
            toks = self.allowed.get(prefix)
            if toks is None:  # no valid continuation: the row silently goes unconstrained
                mask[row] = 0
            else:
                mask[row, toks] = 0
        return scores + mask


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def profile_syncs(fn, device) -> dict:
    """Count host-device synchronisations made by one call of fn (CUDA runtime events)."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    counts = {}
    for e in prof.key_averages():
        if e.key in ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpyAsync", "Memcpy DtoH (Device -> Pageable)",
                     "Memcpy DtoH (Device -> Pinned)", "aten::item", "aten::_local_scalar_dense", "aten::nonzero"):
            counts[e.key] = e.count
    return counts


def main():
    ap = model_arguments(__doc__.split("\n")[0])
    ap.add_argument("--beams", type=int, default=16)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--profile", action="store_true", help="count host syncs in one beam search (CUDA)")
    ap.add_argument("--skip-hf", action="store_true", help="leave out (b), e.g. at 50 beams on a large model")
    ap.add_argument("--out", default="bench/results/decode.json")
    args = ap.parse_args()
    device, dtype = setup(args)
    G = args.beams

    with tempfile.TemporaryDirectory() as tmp:
        catalog, rows = load_data(args.data, Path(tmp))
    model, tok = build_model(args.shape, catalog, rows, dtype, device)
    fmt = build_format(tok)
    trie = build_catalog_trie(fmt, catalog.sids, device)
    allowed: dict[tuple, list[int]] = {}
    for sid in catalog.sids:
        seq = fmt.completion_ids(sid)
        for d in range(len(seq)):
            allowed.setdefault(tuple(seq[:d]), []).append(seq[d])
    allowed = {k: sorted(set(v)) for k, v in allowed.items()}
    label_of_seq = {tuple(fmt.completion_ids(s)): s for s in catalog.sids}

    samples = D.EvalSidDataset(rows)[: args.prompts]
    batches = []
    for i in range(0, len(samples), args.batch):
        ids, mask = left_pad([fmt.prompt_ids(s.prompt) for s in samples[i:i + args.batch]], fmt.pad_id, device)
        batches.append((ids, mask))

    def run_a(ids, mask):
        return beam_search(model, ids, mask, trie, G).sids

    def run_a2(ids, mask):
        return beam_search(model, ids, mask, trie, G, shared_prefix=False).sids

    def run_b(ids, mask):
        proc = PrefixConstrainedProcessor(allowed, ids.shape[1])
        out = model.generate(input_ids=ids, attention_mask=mask, num_beams=G, num_return_sequences=G, do_sample=False,
                             length_penalty=0.0, max_new_tokens=trie.depth, early_stopping=True,
                             logits_processor=LogitsProcessorList([proc]), pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id)
        gen = out[:, ids.shape[1]:].tolist()
        return [label_of_seq.get(tuple(g[: trie.depth])) for g in gen]

    def run_c(ids, mask):
        return beam_search(model, ids, mask, trie, G, constrained=False)

    gen = torch.Generator(device=device).manual_seed(0)

    def run_d(ids, mask):
        return sample(model, ids, mask, trie, G, generator=gen)

    @torch.no_grad()
    def run_e(ids, mask):
        """Bare forwards: prefill [B, T], then L-1 one-token steps of [B*G] rows over the prompt's KV."""
        B, T = ids.shape
        cache = DynamicCache()
        model(input_ids=ids, attention_mask=mask, position_ids=positions(mask), use_cache=True,
              **forward_kwargs(model, cache=cache, keep_last=1))
        for layer in cache.layers:  # each prompt's KV for its G rows (not timed as a forward, but counted in (e))
            layer.keys = layer.keys.repeat_interleave(G, 0)
            layer.values = layer.values.repeat_interleave(G, 0)
        full_mask = mask.repeat_interleave(G, 0)
        tok = ids[:, -1:].repeat_interleave(G, 0)
        for d in range(trie.depth - 1):
            full_mask = torch.cat([full_mask, full_mask.new_ones(B * G, 1)], 1)
            pos = (full_mask.sum(1, keepdim=True) - 1)
            model(input_ids=tok, attention_mask=full_mask, position_ids=pos, use_cache=True, **forward_kwargs(model, cache=cache))
        return None

    methods = {"a_grporec_beam": run_a, "a2_grporec_beam_expanded_kv": run_a2, "b_hf_generate_processor": run_b,
               "c_grporec_unmasked": run_c, "d_grporec_sample": run_d, "e_bare_forwards": run_e}
    if args.skip_hf:
        methods.pop("b_hf_generate_processor")
    for fn in methods.values():  # warm-up on the first batch
        fn(*batches[0])
    # Interleave the methods round by round and keep each one's median round, so that a slow
    # moment of the shared machine or the order of the methods does not decide the ratio.
    rounds: dict[str, list[float]] = {name: [] for name in methods}
    outputs = {}
    for _ in range(args.rounds):
        for name, fn in methods.items():
            total, outs = 0.0, []
            for ids, mask in batches:
                out, dt = timed(lambda: fn(ids, mask), device)
                total += dt
                outs.append(out)
            rounds[name].append(total)
            outputs[name] = outs
    results = {}
    for name, times in rounds.items():
        med = sorted(times)[len(times) // 2]
        results[name] = {"seconds": med, "prompts_per_s": len(samples) / med, "rounds": times}
    assert outputs["a_grporec_beam"] == outputs["a2_grporec_beam_expanded_kv"] or args.dtype != "float32", "cache modes disagree"
    a_items = [set(x[i:i + G]) for out in outputs["a_grporec_beam"] for x in [out] for i in range(0, len(x), G)]
    overlap = speedup = float("nan")
    if "b_hf_generate_processor" in results:
        b_items = [set(x[i:i + G]) for out in outputs["b_hf_generate_processor"] for x in [out] for i in range(0, len(x), G)]
        overlap = sum(len(a & b) for a, b in zip(a_items, b_items)) / sum(len(a) for a in a_items)
        speedup = results["b_hf_generate_processor"]["seconds"] / results["a_grporec_beam"]["seconds"]
    mask_overhead = results["a_grporec_beam"]["seconds"] / results["c_grporec_unmasked"]["seconds"] - 1
    over_bare = results["a_grporec_beam"]["seconds"] / results["e_bare_forwards"]["seconds"]
    syncs = profile_syncs(lambda: run_a(*batches[0]), device) if args.profile and device.type == "cuda" else None
    report = {
        "config": vars(args), "platform": platform.platform(), "torch": torch.__version__,
        "device_name": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "catalog_items": len(catalog), "trie": trie.stats(), "vocab": len(tok),
        "results": results, "speedup_a_over_b": speedup, "item_overlap_a_in_b": overlap,
        "mask_overhead_a_over_c": mask_overhead, "a_over_bare_forwards": over_bare, "host_syncs_per_beam_search": syncs,
    }
    print(f"{args.shape} model, {args.data} prompts, G={G}, {len(samples)} prompts in batches of {args.batch}, "
          f"{args.device} {args.dtype}, {args.threads} threads, median of {args.rounds} interleaved rounds")
    print(trie.describe())
    print(f"{'method':28s} {'seconds':>9s} {'prompts/s':>10s}")
    for name, r in results.items():
        print(f"{name:28s} {r['seconds']:9.3f} {r['prompts_per_s']:10.1f}")
    print(f"speed-up (a) over (b): {speedup:.1f}x   items of (a) also in (b): {overlap:.1%}   "
          f"mask overhead (a)/(c)-1: {mask_overhead:+.1%}   (a) / bare forwards (e): {over_bare:.2f}x")
    if syncs is not None:
        print(f"host syncs in one beam search of {args.batch} prompts: {syncs}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
