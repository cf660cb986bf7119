"""Writing a file so that a failure loses nothing: checkpoints, reports, token files.

The new content goes to a temporary file beside the target, which is renamed over the target only
once it is whole. The temporary file is created exclusively under a fresh name (mkstemp: O_EXCL,
so it is never an existing file or a symlink planted at a predictable name), and the rename replaces
a symlink at the target rather than writing through it: nothing outside the folder is touched, and
two writers never share a temporary file. If the write fails (a full disk, a quota, `ulimit -f`, a
crash), the temporary file is removed and the target keeps its previous content. A failed write is
the user's to fix (free space, choose another folder), so it becomes one UserError line.
"""

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from core.errors import UserError


def os_error_behind(error: BaseException) -> OSError | None:
    """The OSError that caused `error`, if any: torch.save reports a failed write as a RuntimeError
    ("unexpected pos ...") raised while handling the OSError of the file object."""
    while error is not None and not isinstance(error, OSError):
        error = error.__cause__ or error.__context__
    return error


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_temporary_file(path: Path) -> Path:
    """An empty file of our own beside `path` (`.<name>.<random>.tmp`), created exclusively, with the
    permissions a plain open() would give the target (mkstemp's are owner-only)."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise UserError(f"cannot write in {path.parent} ({error.strerror or error}); "
                        "choose another folder") from error
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    return Path(name)


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a new temporary file beside `path` to write; rename it over `path` when the block ends
    normally; remove it if the block fails, and turn a failed write into one UserError."""
    path = Path(path)
    tmp = new_temporary_file(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        cause = os_error_behind(error) if isinstance(error, (OSError, RuntimeError)) else None
        if cause is None:
            raise
        kept = "keeps its previous content" if path.is_file() else "was not written"
        full = cause.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # only then is space the fix
        fix = "free some space or choose another folder" if full else "check the folder or choose another"
        raise UserError(f"could not write {path} ({cause.strerror or cause}); {path.name} {kept}; "
                        f"{fix}") from error
