"""wandb is checked before any work starts: a run or an experiment suite that will log to wandb
must be able to, or it says so in one line now, not with a traceback after an hour of work."""

import os

from core.errors import UserError

HOW_TO_LOG = "log in with `wandb login` (or set WANDB_API_KEY), or log offline with WANDB_MODE=offline"
WANDB_MODES = ("online", "offline", "disabled", "dryrun", "run", "shared")  # what wandb itself accepts
NO_LOGIN_NEEDED = ("offline", "disabled", "dryrun")


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def check_wandb_ready() -> None:
    """wandb is installed, WANDB_MODE is valid, and, unless logging offline, an API key is set up.

    wandb.login(verify=False) finds the key wherever wandb keeps it (WANDB_API_KEY, ~/.netrc, its
    settings) without contacting the server; in a terminal with no key it asks for one."""
    try:
        import wandb
    except ImportError:
        raise UserError("wandb_log=True needs wandb: pip install wandb (or set --wandb_log=False)")
    mode = os.environ.get("WANDB_MODE")
    if mode is not None and mode not in WANDB_MODES:
        raise UserError(f"WANDB_MODE={mode!r} is not a wandb mode; use online, offline or disabled")
    if mode in NO_LOGIN_NEEDED:
        return
    try:
        wandb.login(verify=False)
    except Exception as error:  # wandb raises its own UsageError, AuthenticationError, ...
        raise UserError(f"wandb_log=True but wandb is not logged in ({first_line(error)}); {HOW_TO_LOG}")
