"""Errors a user can fix, and how entry scripts report them."""

from __future__ import annotations

import functools
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

from omegaconf.errors import MissingMandatoryValue

T = TypeVar("T")


class UserError(Exception):
    """Bad input or config: reported as one paragraph that says what to fix, no traceback."""


def first_line(e: BaseException | str) -> str:
    """The first line of an error's message (library errors can be pages long)."""
    text = str(e).strip()
    if not text:
        return type(e).__name__ if isinstance(e, BaseException) else ""
    return text.splitlines()[0]


def exit_on_user_error(fn: Callable[..., T]) -> Callable[..., T]:
    """Turn a `UserError` into a one-paragraph message on stderr and exit status 2.

    Only for a single run: in a sweep the exception must propagate so that the sweeper
    records the trial as failed and carries on.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (UserError, MissingMandatoryValue) as e:
            if _in_multirun():
                raise
            if isinstance(e, MissingMandatoryValue):
                e = UserError(
                    f"config key {e.full_key} has no value; set it on the command "
                    f"line, e.g. `python {_script()} {e.full_key}=...`."
                )
            report_user_error(e)

    return wrapper


def report_user_error(e: Exception) -> NoReturn:
    """Print `e` as one wrapped paragraph on stderr and exit with status 2."""
    msg = textwrap.fill(str(e), width=100, break_long_words=False, break_on_hyphens=False)
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(2) from None


def _script() -> str:
    """The entry script as the user typed it (train.py, infer.py, tune_openbox.py)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name.endswith(".py") else "train.py"


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
