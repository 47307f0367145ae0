"""The sweep's console, defined once: every line a sweep prints for its user starts with
`[sweep]` and is flushed at once (trials print from other processes in between)."""

from __future__ import annotations

PREFIX = "[sweep]"


def say(line: str) -> None:
    """One line on the sweep's console."""
    print(f"{PREFIX} {line}", flush=True)
