"""One exception type for mistakes a user can make, and the guard that turns it into one line.

Entry scripts wrap their `main` in `exit_on_user_error`: a `UserError` anywhere below prints
`error: <what is wrong and what to do>` on stderr and exits with status 2, with no traceback.
Internal invariants still use `assert` and crash loudly, because those are our bugs.
"""

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
