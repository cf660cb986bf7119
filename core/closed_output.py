"""A run outlives its reader: output written after stdout or stderr closed is dropped, not fatal.

A run's output often goes to a pipe (`| tee`, a study reading its child, a scheduler's log reader)
or a terminal. When the reader exits first (or the terminal hangs up), the next print raises
BrokenPipeError (or EIO), and a run stopping on SIGTERM would die in its "stopped: saved" line, or
in a log line before it, without saving. Under `output_may_close` the first broken write points
that stream's descriptor at /dev/null instead, so the run goes on and its stop still saves; what it
prints from then on goes nowhere.
"""

import contextlib
import errno
import os
import sys
from collections.abc import Iterator


class SurvivingStream:
    """A text stream that turns a broken pipe into /dev/null and carries on."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except OSError as error:
            self.reader_gone(error)
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as error:
            self.reader_gone(error)

    def reader_gone(self, error: OSError) -> None:
        """Send the descriptor to /dev/null: the text still buffered, and the interpreter's flush at
        exit, then succeed instead of failing again (which would end the process with status 120).
        EPIPE: a pipe's reader exited; EIO: the terminal hung up. Any other error is raised."""
        if error.errno not in (errno.EPIPE, errno.EIO):
            raise error
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self.stream.fileno())
        finally:
            os.close(devnull)
        with contextlib.suppress(OSError):
            self.stream.flush()

    def __getattr__(self, name):  # isatty, fileno, encoding...: the stream's own
        return getattr(self.stream, name)


@contextlib.contextmanager
def output_may_close() -> Iterator[None]:
    """Within the block, sys.stdout and sys.stderr survive their reader's exit."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = SurvivingStream(sys.stdout), SurvivingStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
