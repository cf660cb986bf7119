"""Ctrl-C (SIGINT) and SIGTERM ask a run to stop after its current step, so it can save first.

The signal handler only raises a flag; the training loop reads it between steps, where the model
and optimizer are whole. Under DDP the ranks sum their flags every step, so a signal that reaches
one rank stops them all at the same step (a rank that left early would hang the others in their
next all-reduce). A second Ctrl-C stops at once, without saving.
"""

import signal

from core.distributed import Distributed


class StopRequest:
    def __init__(self):
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
        self.requested = True
        signal.signal(signum, self.previous[signum])  # the next one acts immediately
        print(f"\n{signal.Signals(signum).name}: stopping after this step to save a checkpoint "
              "(press Ctrl-C again to quit without saving)", flush=True)

    def agreed(self, dist: Distributed) -> bool:
        """True on every rank if any rank was asked to stop."""
        return dist.sum([float(self.requested)])[0] > 0
