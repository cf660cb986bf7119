"""Ctrl-C (SIGINT) and SIGTERM ask a run to stop after its current step, so it can save first.

The signal handler only raises a flag; the training loop reads it between steps, where the model
and optimizer are whole. Under DDP the ranks sum their flags every step, so a signal that reaches
one rank stops them all at the same step (a rank that left early would hang the others in their
next all-reduce). In a single process a second Ctrl-C stops at once, without saving; under torchrun
it does not, because torchrun passes on the Ctrl-C it receives itself, so every rank sees two.
"""

import signal

from training.distributed import Distributed


class StopRequest:
    def __init__(self, dist: Distributed):
        self.dist = dist
        self.requested = False
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def handle(self, signum, frame):
        if self.requested:
            return
        self.requested = True
        again = ""
        if not self.dist.enabled:
            signal.signal(signum, self.previous[signum])  # the next one acts immediately
            again = " (press Ctrl-C again to quit without saving)"
        if self.dist.is_master:
            print(f"\n{signal.Signals(signum).name}: stopping after this step to save a checkpoint{again}",
                  flush=True)

    def agreed(self) -> bool:
        """True on every rank if any rank was asked to stop."""
        return self.dist.sum([float(self.requested)])[0] > 0
