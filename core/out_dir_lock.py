"""One training per out_dir: a second one started on the same folder is refused at set-up.

Two runs writing one ckpt.pt would each replace the other's checkpoint, and a resume would continue
whichever wrote last. The lock is an flock on out_dir/.train.lock, which the kernel drops when its
holder exits however it ends (SIGKILL included), so a crashed run never leaves the folder locked.
The file stays, empty, and is never written: locking it changes nothing a reader of the folder sees.
"""

import fcntl
import os
from pathlib import Path

from core.errors import UserError

LOCK_NAME = ".train.lock"


class OutDirLock:
    """Held from set-up until the run ends (a context manager); `release` frees it."""

    def __init__(self, folder: str | Path):
        path = Path(folder) / LOCK_NAME
        try:  # O_NOFOLLOW: a symlink planted at the lock's name is refused, not followed
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise UserError(f"cannot create the lock file {path} ({error.strerror or error}); "
                            "choose another --out_dir") from error
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise UserError(f"out_dir {folder} is in use by another training; wait for it to end, or "
                            "give this run another --out_dir") from None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
