"""One exception type for mistakes a user can make, and the guard that turns it into one line.

Entry scripts wrap their `main` in `exit_on_user_error`: a `UserError` anywhere below prints
`error: <what is wrong and what to do>` on stderr and exits with status 2, with no traceback.
Internal invariants still use `assert` and crash loudly, because those are our bugs. Modules that
cannot import this one (models/ imports nothing from the repo) mark such an exception class with
`user_facing = True` instead (models.transformer.NonFiniteLogits).
"""

import argparse
import functools
import sys

from core.closed_output import output_may_close
from core.i18n import error_line


class UserError(Exception):
    """A problem with the user's input (config, paths, prompts, checkpoints), explained in one line.

    Given fields, the message is an N_ template (core/i18n.py) that they fill, so a reader of another
    language can be shown the line in theirs (i18n.error_line): UserError(N_("{what}: {number:g} is
    outside {low} to {high}"), what=N_("seed"), number=7, low=0, high=5). str() is the English line.
    A field holding what the user typed goes in quoted (repr), so it is never taken for catalog text."""

    def __init__(self, message: str, **fields):
        super().__init__(message.format(**fields) if fields else message)
        self.template, self.fields = message, fields


def is_user_error(error: BaseException) -> bool:
    """A UserError, or an exception from below core/ that declares itself the user's to fix."""
    return isinstance(error, UserError) or getattr(error, "user_facing", False) is True


def exit_on_user_error(main):
    """`main`, with a UserError turned into its one line and exit status 2; and output that survives
    its reader's exit (`python sample.py ... | head -1`, a killed parent): see core/closed_output.py."""
    @functools.wraps(main)
    def guarded(*args, **kwargs):
        with output_may_close():
            try:
                return main(*args, **kwargs)
            except Exception as error:
                if not is_user_error(error):
                    raise
                print(f"error: {error_line(error)}", file=sys.stderr)
        sys.exit(2)

    return guarded


class ArgumentParser(argparse.ArgumentParser):
    """argparse for scripts that take flags its way: a usage mistake is a UserError too (one line,
    exit 2), not argparse's usage block."""

    def error(self, message):
        raise UserError(f"{message} (see --help)")
