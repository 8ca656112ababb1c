"""The log-prob head alone: `log_softmax` + gather against grporec's chunked head, side by side.

    python bench/experiments/logprob_head.py                              # CPU: 256 rows x 5 tokens, V = 152,536, bf16 logits
    python bench/experiments/logprob_head.py --device cuda --rows 1024

Forward and backward of per-token log-probs from logits shaped like the 0.5B policy's (one
micro-batch of completions, the Qwen2.5 vocabulary plus SID tokens), in the dtype autocast gives
them. Reports, per method, the median time of --rounds (interleaved) and the peak memory above the
logits themselves: CUDA allocated bytes, or the process's resident set on a CPU (VmHWM, reset
before each method).
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/common.py
from common import PhasePeak  # noqa: E402
from grporec.logprobs import token_logps  # noqa: E402


def naive(logits, tokens):
    """What grporec did before: three fp32 [N, L, V] tensors, the log-softmax kept for backward."""
    return logits.float().log_softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


METHODS = {"a_log_softmax_gather": naive, "b_chunked_head": token_logps}


def main():
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=256, help="completion rows (B x G)")
    ap.add_argument("--tokens", type=int, default=5, help="completion tokens L")
    ap.add_argument("--vocab", type=int, default=151936 + 600)
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="bench/results/logprob_head_cpu.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(args.rows, args.tokens, args.vocab, generator=g, device=device).to(getattr(torch, args.dtype))
    logits.requires_grad_(True)
    tokens = torch.randint(0, args.vocab, (args.rows, args.tokens), generator=g, device=device)
    weights = torch.randn(args.rows, args.tokens, generator=g, device=device)
    meter = PhasePeak(device)
    times = {name: [] for name in METHODS}
    for r in range(args.rounds):
        for name, fn in (METHODS.items() if r % 2 == 0 else reversed(METHODS.items())):
            logits.grad = None
            meter.start()
            t = time.perf_counter()
            lp = fn(logits, tokens)
            (lp * weights).sum().backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t)
            meter.stop(name)
            del lp
    logits.grad = None
    values = []  # after the timed rounds, so that no method's outputs sit in memory while another is measured
    for fn in METHODS.values():
        lp = fn(logits, tokens)
        (grad,) = torch.autograd.grad((lp * weights).sum(), logits)
        values.append((lp.detach(), grad))
        del lp, grad
    (va, ga), (vb, gb) = values
    logits_gib = logits.numel() * logits.element_size() / 2**30
    report = {"config": vars(args), "torch": torch.__version__, "logits_gib": logits_gib,
              "median_s": {k: statistics.median(v) for k, v in times.items()}, "peak_gib": meter.peaks,
              "max_abs_diff_logps": float((va - vb).abs().max()), "max_abs_diff_grad": float((ga.float() - gb.float()).abs().max())}
    a, b = METHODS
    report["time_ratio_a_over_b"] = report["median_s"][a] / report["median_s"][b]
    print(f"logits [{args.rows}, {args.tokens}, {args.vocab}] {args.dtype} on {args.device}: {logits_gib:.2f} GiB")
    for k in METHODS:
        print(f"  {k:22s} {report['median_s'][k]:7.3f} s   peak {report['peak_gib'][k]:.2f} GiB")
    print(f"  time a/b {report['time_ratio_a_over_b']:.2f}x; log-probs differ by at most {report['max_abs_diff_logps']:.1e}, "
          f"gradients by {report['max_abs_diff_grad']:.1e}")
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
