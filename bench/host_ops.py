"""A host-cost proxy a CPU can measure: the aten operations each GRPO phase dispatches (issue 35).

On a GPU a small model's step is bound by the host: every dispatched operation costs ~10-17 us of
Python, dispatcher and autograd bookkeeping whatever its FLOPs. `OpCounter` is a TorchDispatchMode
that counts, per phase, every operation that reaches the kernels, the ones that launch work
(views and other operations whose every output aliases an input are metadata only) and the host
syncs (`aten::_local_scalar_dense`: `.item()`, `.tolist()`, a tensor's truth value). Used by
`bench/grpo_step.py --count-ops`; the counts do not depend on widths or batch size, so a narrow
model (`--shape narrow`: the 0.5B shape's 24 layers and heads, tiny widths) counts what the real
one dispatches, where its time is almost all host overhead.
"""
from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OPS = ("aten._local_scalar_dense.default",)


def is_metadata_only(func) -> bool:
    """True for an op all of whose outputs alias an input without writing it (a view: no work launched)."""
    returns = func._schema.returns
    return bool(returns) and all(r.alias_info is not None and not r.alias_info.is_write for r in returns)


class OpCounter(TorchDispatchMode):
    """Counts dispatched aten ops into `counts[phase]`: total, work-launching, host syncs, by name."""

    def __init__(self):
        super().__init__()
        self.phase, self.counts = None, {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.phase is not None:
            c = self.counts.setdefault(self.phase, Counter())
            c["total"] += 1
            if not is_metadata_only(func):
                c["work"] += 1
                c[f"op:{func}"] += 1
            if str(func) in SYNC_OPS:
                c["syncs"] += 1
        return func(*args, **(kwargs or {}))

    def wrap(self, fn, phase: str):
        """`fn` with its ops counted under `phase` (the mode must be active around the whole run)."""
        def counted(*a, **k):
            previous, self.phase = self.phase, phase
            try:
                return fn(*a, **k)
            finally:
                self.phase = previous
        return counted

    def summary(self, steps: int, top: int = 15) -> dict:
        """Per phase and step: total, work-launching ops and syncs; the most frequent work ops."""
        out = {}
        for phase, c in self.counts.items():
            ops = Counter({k[3:]: v for k, v in c.items() if k.startswith("op:")})
            out[phase] = {"total_per_step": c["total"] / steps, "work_per_step": c["work"] / steps,
                          "syncs_per_step": c["syncs"] / steps, "top_work_ops": dict(ops.most_common(top))}
        return out


def autocast_for(device: torch.device):
    """bf16 autocast as a CUDA run computes (on a CPU: the CPU's autocast, whose casts count the same way)."""
    return torch.autocast(device.type, dtype=torch.bfloat16)


class PhaseProfiler:
    """torch.profiler over a run, with each phase marked as a `phase/<name>` range: where a phase's
    time goes (the host's share against the device's), as a table of the top operations and a
    per-phase summary. On a GPU a phase whose device time is far below its host time waits on the
    host; on a CPU both are host time."""

    def __init__(self, device: torch.device):
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        self.prof = profile(activities=activities, record_shapes=False)
        self.device = device

    def __enter__(self):
        self.prof.__enter__()
        return self

    def __exit__(self, *exc):
        return self.prof.__exit__(*exc)

    @staticmethod
    def wrap(fn, phase: str):
        from torch.profiler import record_function

        def marked(*a, **k):
            with record_function(f"phase/{phase}"):
                return fn(*a, **k)
        return marked

    def summary(self, top: int = 25) -> dict:
        """{"phases": {name: {"calls", "host_s", "device_s"}}, "table": the top ops by self time}."""
        events = self.prof.key_averages()
        device_attr = "device_time_total" if hasattr(events[0], "device_time_total") else "cuda_time_total"
        phases = {e.key[len("phase/"):]: {"calls": e.count, "host_s": e.cpu_time_total / 1e6,
                                          "device_s": getattr(e, device_attr, 0) / 1e6}
                  for e in events if e.key.startswith("phase/")}
        sort = "self_cuda_time_total" if self.device.type == "cuda" else "self_cpu_time_total"
        return {"phases": phases, "sort": sort, "table": events.table(sort_by=sort, row_limit=top)}
