"""Writing a file so that a failure loses nothing: checkpoints, reports, token files.

The new content goes to a temporary file beside the target, which is renamed over the target only
once it is whole. If the write fails (a full disk, a quota, `ulimit -f`, a crash), the temporary
file is removed and the target keeps its previous content. A failed write is the user's to fix
(free space, choose another folder), so it becomes one UserError line, not a traceback.
"""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from core.errors import UserError


def os_error_behind(error: BaseException) -> OSError | None:
    """The OSError that caused `error`, if any: torch.save reports a failed write as a RuntimeError
    ("unexpected pos ...") raised while handling the OSError of the file object."""
    while error is not None and not isinstance(error, OSError):
        error = error.__cause__ or error.__context__
    return error


@contextlib.contextmanager
def replacing(path: str | Path, tmp: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path (default `<path>.tmp`) to write; rename it over `path` when the block
    ends normally; remove it if the block fails, and turn a failed write into one UserError."""
    path = Path(path)
    tmp = tmp or path.with_name(path.name + ".tmp")
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
        raise UserError(f"could not write {path} ({cause.strerror or cause}); {path.name} {kept}; "
                        "free some space or choose another folder") from error
