"""Ctrl-C (SIGINT), SIGTERM and SIGHUP ask a run to stop cleanly; a second signal stops it at once.

The first signal of any kind only raises a flag; the training loop reads it between steps and
between evaluation batches, where the model and optimizer are whole, saves, and ends. Job
schedulers rely on this: SLURM sends SIGTERM, then SIGKILL after a grace period, and `timeout` and
`kill` send SIGTERM; a terminal that closes (an ssh session that drops) sends SIGHUP, which stops
and saves too, unless the run was started under `nohup` (which ignores it). Any second signal
exits at once without saving (the checkpoint on disk is the last whole one: saves are atomic, see
core/checkpoint.py).

Under DDP the ranks sum their flags at every check, so a signal that reaches one rank stops them
all at the same step (a rank that left early would hang the others in their next all-reduce).
torchrun passes on a signal it receives to every worker; older versions also left the workers in
the terminal's process group, so one Ctrl-C reached them twice, within moments. Under DDP a repeat
of the first signal within DUPLICATE_WINDOW_S is therefore taken as the same request.
"""

import os
import signal
import sys
import time

from training.distributed import Distributed

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
DUPLICATE_WINDOW_S = 1.0


class StopRequest:
    def __init__(self, dist: Distributed):
        self.dist = dist
        self.requested = False
        self.first: tuple[int, float] | None = None  # (signal, time) of the first request
        self.previous = {}

    def __enter__(self):
        for sig in SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup's choice stands
                self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():  # each it took over, whichever arrived
            signal.signal(sig, handler)

    def handle(self, signum, frame):
        name = signal.Signals(signum).name
        if not self.requested:
            self.requested, self.first = True, (signum, time.monotonic())
            if self.dist.is_master:
                print(f"\n{name}: stopping at the next step or evaluation batch to save a checkpoint "
                      "(signal again to exit at once, without saving)", flush=True)
            return
        first_signal, first_time = self.first
        repeated = signum == first_signal and time.monotonic() - first_time < DUPLICATE_WINDOW_S
        if self.dist.enabled and repeated:
            return  # the same request, delivered by the terminal and by torchrun
        print(f"\nsecond signal ({name}): exiting at once, without saving", file=sys.stderr, flush=True)
        # Die of the signal itself, as an unhandled one would: shells and schedulers read the status.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def agreed(self) -> bool:
        """True on every rank if any rank was asked to stop (an all-reduce under DDP)."""
        return self.dist.sum([float(self.requested)])[0] > 0
