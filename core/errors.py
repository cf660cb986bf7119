"""One exception type for mistakes a user can make, and the guard that turns it into one line.

Entry scripts wrap their `main` in `exit_on_user_error`: a `UserError` anywhere below prints
`error: <what is wrong and what to do>` on stderr and exits with status 2, with no traceback.
Internal invariants still use `assert` and crash loudly, because those are our bugs.
"""

import argparse
import functools
import sys


class UserError(Exception):
    """A problem with the user's input (config, paths, prompts, checkpoints), explained in one line."""


def exit_on_user_error(main):
    @functools.wraps(main)
    def guarded(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    return guarded


class ArgumentParser(argparse.ArgumentParser):
    """argparse for scripts that take flags its way: a usage mistake is a UserError too (one line,
    exit 2), not argparse's usage block."""

    def error(self, message):
        raise UserError(f"{message} (see --help)")
