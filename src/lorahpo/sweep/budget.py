"""A sweep's time budget (`search.time_budget`): what it has spent, whether a new trial can
still reach its first scheduler milestone, and ending the sweep when it runs out.

The budget is the sweep's, across resumes: `budget.json` in the sweep directory keeps the
seconds spent. At the end, the trials still running stop as an interrupted sweep's do (Ray
Tune's documented stop signal, SIGUSR1, saves the experiment's state), so their checkpoints
stay and a resume with a larger budget continues them; the table calls them `paused`.

A restored Tuner brings back its own pickled searcher and callbacks, so those find the
budget of the driver that runs them here (`active()`), not in their own state. The Ray Tune
side (the searcher's gate, the callback that ends the sweep) is in `budget_gate`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import time
from pathlib import Path
from typing import Any

from lorahpo.errors import UserError
from lorahpo.rundir import Status
from lorahpo.sweep import ledger

BUDGET_FILE = "budget.json"  # {"time_budget_s", "spent_s", "ended"}
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_active: Budget | None = None


def parse_duration(value: Any, key: str = "search.time_budget") -> float | None:
    """Seconds from `3h`, `45m`, `1h30m`, `90s` or a number of seconds; None for null."""
    if value is None:
        return None
    text = str(value).strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    elif re.fullmatch(r"(\d+(\.\d+)?[hms])+", text):
        seconds = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms])", text))
    else:
        seconds = -1.0
    if seconds <= 0:
        raise UserError(
            f"{key}={value!r} is not a duration: give hours, minutes or seconds, e.g. "
            f"{key}=3h, {key}=45m, {key}=1h30m or {key}=600 (seconds), or null for none."
        )
    return seconds


def clock(seconds: float) -> str:
    """`1:02:03`, `2:03`."""
    seconds = int(max(0.0, seconds))
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def read_state(sweep_dir: Path) -> dict[str, Any]:
    """What `budget.json` says (an empty dict for a sweep without a budget)."""
    path = sweep_dir / BUDGET_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def bought(sweep_dir: Path, counts: dict[str, int]) -> str:
    """`time budget 1:00:00: 1:00:04 spent on 14 trials (9 completed, ...)` for the table."""
    state = read_state(sweep_dir)
    total, spent = state.get("time_budget_s", 0.0), state.get("spent_s", 0.0)
    shown = ", ".join(f"{n} {status}" for status, n in counts.items())
    line = f"time budget {clock(total)}: {clock(spent)} spent on {sum(counts.values())} "
    line += f"trials ({shown})"
    if counts.get(Status.PAUSED):
        line += (
            "; the paused trials stopped at the budget with their checkpoints: resume with a "
            "larger search.time_budget to continue them"
        )
    return line


def ended_at_budget(sweep_dir: Path) -> bool:
    """Whether the sweep's last driver stopped its running trials at the budget."""
    return bool(read_state(sweep_dir).get("ended"))


class Budget:
    """The budget of one driver run: `total_s` for the whole sweep, of which earlier runs of
    it spent what `budget.json` says. `milestone` is the evaluations a trial needs before
    the scheduler first judges it (all of them without early stopping); `began`: this driver
    run's start (Unix seconds; None: now)."""

    def __init__(
        self, sweep_dir: Path, total_s: float, milestone: int, began: float | None = None
    ) -> None:
        self.sweep_dir, self.total_s, self.milestone = sweep_dir, total_s, milestone
        self.spent_before = float(read_state(sweep_dir).get("spent_s", 0.0))
        self.began = time.time() if began is None else began  # this driver run's start
        self.ended = False
        self._estimate: tuple[float, float | None] = (0.0, None)  # (when, seconds)
        self._reached: dict[str, float] = {}  # trial id -> seconds to its milestone

    def spent(self) -> float:
        return self.spent_before + time.time() - self.began

    def left(self) -> float:
        return self.total_s - self.spent()

    def save(self) -> None:
        state = {"time_budget_s": self.total_s, "spent_s": round(self.spent(), 1)}
        (self.sweep_dir / BUDGET_FILE).write_text(json.dumps({**state, "ended": self.ended}))

    def to_milestone(self) -> float | None:
        """Seconds a trial takes from its start to its first milestone: the median of the
        trials that got there; while none has, the longest-running one's time so far (a
        lower bound). None before any trial started. Recomputed at most every 5 s."""
        when, value = self._estimate
        if time.time() - when < 5.0:
            return value
        starts: dict[str, list[float]] = {}  # a trial starts again when resumed or promoted
        for e in ledger.read_events(self.sweep_dir):
            if e["event"] == ledger.Event.START:
                starts.setdefault(e["trial_id"], []).append(e["time"])
        for trial_id, num in ledger.trial_numbers(self.sweep_dir).items():
            if trial_id in starts and trial_id not in self._reached:
                hit = _milestone_time(self.sweep_dir / str(num), self.milestone)
                began = [t for t in starts[trial_id] if hit is not None and t <= hit]
                if began:  # from the start that got it there
                    self._reached[trial_id] = hit - began[-1]
        if self._reached:
            value = statistics.median(self._reached.values())
        else:
            value = max((time.time() - t[-1] for t in starts.values()), default=None)
        self._estimate = (time.time(), value)
        return value

    def allows_new_trial(self) -> bool:
        """A new trial starts only if it can reach its first milestone before the end."""
        need = self.to_milestone()
        return self.left() > (need or 0.0)

    def end_now(self) -> None:
        """Stop the sweep as Ray Tune stops on a stop signal: its state saved, the running
        trials resumable. Only while a Tuner runs (it handles the signal then)."""
        self.ended = True
        self.save()
        if signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN, None):
            os.kill(os.getpid(), signal.SIGUSR1)


def _milestone_time(run_dir: Path, milestone: int) -> float | None:
    from lorahpo.rundir import RunDir

    # a trial that plans fewer evaluations is judged at its end (FIFO's milestone is the
    # longest trial's last evaluation)
    records = RunDir(run_dir).read_metrics()
    reached = [r.time for r in records if r.eval >= min(milestone, r.planned_evals or milestone)]
    return reached[0] if reached else None


def activate(budget: Budget | None) -> None:
    """Make `budget` the one this driver's searcher gate and callback consult."""
    global _active
    _active = budget
    if budget is not None:
        budget.save()  # a resumed sweep's `ended` is cleared: its trials run again


def active() -> Budget | None:
    return _active
