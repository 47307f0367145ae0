"""The one place a training run reports an evaluation to whoever is listening.

Outside a sweep nobody listens and `report` does nothing. A sweeper installs a listener for
the duration of one trial (e.g. forwarding to Ray Tune so a scheduler can stop the trial).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

Listener = Callable[[dict[str, Any]], None]
_listener: Listener | None = None


def report(metrics: dict[str, Any]) -> None:
    """Send one evaluation's metrics to the active listener, if any."""
    if _listener is not None:
        _listener(metrics)


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Route `report` calls to `listener` inside this block."""
    global _listener
    previous, _listener = _listener, listener
    try:
        yield
    finally:
        _listener = previous
