"""Policy log-prob forward + backward: prompt shared by its G completions vs the plain forward.

    python bench/logprobs.py                 # tiny model, industrial-like prompts, CPU
    python bench/logprobs.py --device cuda --shape qwen2.5-0.5b --dtype bfloat16

Both compute log p(completion tokens) for B prompts x G completions and backpropagate the same
weighted sum; (a) runs each prompt once and expands its KV cache to its G rows, (b) runs
prompt + completion for every row. Prints seconds per call, the ratio, and the largest
difference of the log-probs and of the gradients; writes JSON.
"""
from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import build_model, load_data, model_arguments, setup  # noqa: E402
from grporec.data import datasets as D  # noqa: E402
from grporec.decode import beam_search, build_catalog_trie, left_pad  # noqa: E402
from grporec.models.format import build_format  # noqa: E402
from grporec.logprobs import completion_logps, full_completion_logps  # noqa: E402


def main():
    ap = model_arguments(__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--generations", type=int, default=16)
    ap.add_argument("--out", default="bench/results/logprobs.json")
    args = ap.parse_args()
    device, dtype = setup(args)
    with tempfile.TemporaryDirectory() as tmp:
        catalog, rows = load_data(args.data, Path(tmp))
    model, tok = build_model(args.shape, catalog, rows, dtype, device)
    fmt = build_format(tok)
    trie = build_catalog_trie(fmt, catalog.sids, device)
    samples = D.SidDataset(rows)[: args.prompts]
    ids, mask = left_pad([fmt.prompt_ids(s.prompt) for s in samples], fmt.pad_id, device)
    r = beam_search(model, ids, mask, trie, args.generations)
    model.train()
    inputs = (r.prompt_ids, r.prompt_mask, r.completion_ids, r.completion_mask)
    weights = torch.randn(r.completion_ids.shape, generator=torch.Generator().manual_seed(0)).to(device) * r.completion_mask

    def run(fn):
        model.zero_grad(set_to_none=True)
        lp = fn(model, *inputs)
        (lp * weights).sum().backward()
        return lp.detach(), [p.grad.detach().clone() for p in model.parameters()]

    methods = {"a_prompt_shared": completion_logps, "b_plain": full_completion_logps}
    outs = {name: run(fn) for name, fn in methods.items()}  # warm-up, and the values compared
    times = {name: [] for name in methods}
    for _ in range(args.rounds):
        for name, fn in methods.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            run(fn)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    m = r.completion_mask.bool()
    lp_diff = (outs["a_prompt_shared"][0][m] - outs["b_plain"][0][m]).abs().max().item()
    g_diff = max((a - b).abs().max().item() for a, b in zip(outs["a_prompt_shared"][1], outs["b_plain"][1]))
    report = {"config": vars(args), "platform": platform.platform(), "torch": torch.__version__,
              "prompt_tokens": int(ids.shape[1]), "completion_tokens": int(r.completion_ids.shape[1]),
              "seconds": med, "speedup": med["b_plain"] / med["a_prompt_shared"],
              "max_abs_diff_logps": lp_diff, "max_abs_diff_grads": g_diff}
    print(f"{args.shape} model, {args.prompts} prompts x {args.generations} completions, prompt {ids.shape[1]} tokens, "
          f"completion {r.completion_ids.shape[1]} tokens, {args.device} {args.dtype}, median of {args.rounds} rounds")
    for k, v in med.items():
        print(f"  {k:18s} {v * 1000:8.1f} ms per forward + backward")
    print(f"speed-up {report['speedup']:.1f}x; max |diff| log-probs {lp_diff:.2e}, gradients {g_diff:.2e}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
