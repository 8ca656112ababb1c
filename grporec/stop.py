"""`StopRequest`: SIGTERM/SIGINT ask a training loop to checkpoint and exit 0 after the current step.

Shared by the GRPO loop and SFT, so that a scheduler's SIGTERM (or Ctrl-C) never loses more than
the step in progress. A second signal acts as usual (the previous handler), so a stuck job can
still be killed.
"""
from __future__ import annotations

import signal


class StopRequest:
    def __init__(self):
        self.requested = False
        self._previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signum, self._previous[signum])  # a second signal acts as usual

    def restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
