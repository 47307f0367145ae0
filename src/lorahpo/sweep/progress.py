"""What the driver hears from Ray Tune while a sweep runs: a Tune callback that records each
trial's start and end in the ledger, prints one line per finished trial and a status line
while trials run, and asks for the summary to be rewritten. (Ray's own per-trial tables are
too loud for long sweeps.)"""

from __future__ import annotations

import time
from pathlib import Path

from ray.tune import Callback
from ray.tune.experiment import Trial

from lorahpo.errors import first_line
from lorahpo.objective import Objective
from lorahpo.rundir import RunDir, RunResult, Status
from lorahpo.sweep import budget, ledger, reported
from lorahpo.sweep.budget import clock
from lorahpo.sweep.console import say
from lorahpo.sweep.space import plain_params
from lorahpo.sweep.summary import request_summary
from lorahpo.sweep.table import progress_line

# how Ray reports a trial whose worker process died (killed, or by Ray's memory monitor)
WORKER_DIED = ("actor died", "worker process has died", "ActorDiedError", "WorkerCrashedError")
WORKER_DIED += ("OutOfMemoryError: Task was killed",)


class TrialEvents(Callback):
    """Ledger events, progress lines and summary requests; a status line every
    `status_every` seconds while trials run. `n_trials`: trials planned (None: as many as the
    time budget allows); `concurrency`: trials at once."""

    def __init__(
        self,
        sweep_dir: Path,
        n_trials: int | None,
        concurrency: int,
        objective: Objective,
        status_every: float,
    ) -> None:
        self.sweep_dir, self.n_trials = sweep_dir, n_trials
        self.concurrency, self.objective, self.status_every = concurrency, objective, status_every
        self.began = self.last_status = time.time()
        self.durations: list[float] = []
        self.started: dict[str, float] = {}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.started[trial.trial_id] = time.time()
        params = plain_params(trial.config)
        ledger.record_event(self.sweep_dir, trial.trial_id, ledger.Event.START, params=params)

    def on_trial_complete(self, iteration, trials, trial, **info):
        failed = reported.failed(trial.last_result)  # its code raised: it recorded why
        ledger.record_event(
            self.sweep_dir, trial.trial_id, ledger.Event.ERROR if failed else ledger.Event.COMPLETE
        )
        self._finished(trials, trial, failed=failed)

    def on_trial_error(self, iteration, trials, trial, **info):
        """Ray gave up on a trial: its worker or node was lost once more than retried."""
        ledger.record_event(self.sweep_dir, trial.trial_id, ledger.Event.ERROR)
        self._record_missing_result(trial)
        self._finished(trials, trial, failed=True)

    def on_trial_recover(self, iteration, trials, trial, **info):
        """Ray retries a trial whose worker or node was lost (lorahpo.sweep.ray_session)."""
        ledger.record_event(self.sweep_dir, trial.trial_id, ledger.Event.RETRY)
        num = ledger.trial_numbers(self.sweep_dir).get(trial.trial_id, "?")
        why = first_line(ray_error(trial) or "its worker was lost")[:200]
        say(
            f"trial {num} lost its worker ({why}): running it again from its latest "
            f"checkpoint (retry {trial.run_metadata.num_failures} of {trial.max_failures})"
        )

    def _record_missing_result(self, trial) -> None:
        """A trial that left no result (its worker process died, killed from outside,
        typically by the kernel's out-of-memory killer) is recorded as failed, saying why."""
        num = ledger.trial_numbers(self.sweep_dir).get(trial.trial_id)
        if num is None:
            return
        rd = RunDir(self.sweep_dir / str(num))
        result = rd.read_result()
        if result is not None and result.status == Status.FAILED:
            return  # the trial recorded its own failure
        error = ray_error(trial) or "the trial ended without a result"
        rd.path.mkdir(parents=True, exist_ok=True)
        if not rd.error_path.exists():  # the worker's own traceback, if it left one, stays
            rd.error_path.write_text(error + "\n")
        died = any(sign in error for sign in WORKER_DIED)
        message = worker_died_message(error) if died else first_line(error)
        rd.write_result(RunResult(status=Status.FAILED, error=message))

    def on_step_end(self, iteration, trials, **info):
        now = time.time()
        if now - self.last_status < self.status_every:
            return
        self.last_status = now
        running = [t for t in trials if t.status == Trial.RUNNING]
        if running:
            say(self._status(trials, running, now))

    def _finished(self, trials, trial, failed: bool) -> None:
        if trial.trial_id in self.started:
            self.durations.append(time.time() - self.started.pop(trial.trial_id))
        line = progress_line(self.sweep_dir, trial.trial_id, failed, trial.last_result or {})
        done = 1 + sum(t.is_finished() and t is not trial for t in trials)
        running = {t.trial_id for t in trials if t.status == Trial.RUNNING and t is not trial}
        total = f"/{self.n_trials}" if self.n_trials else ""
        say(f"{line} | {done}{total} done, {len(running)} running")
        request_summary(self.sweep_dir, running)

    def _status(self, trials, running, now: float) -> str:
        """`3:10 elapsed | 5/16 done | trial 5 eval 3/12 0.8123, ... | best log_loss so far
        0.4419 | ~6 min left` from what Ray knows of each trial."""
        done = sum(t.is_finished() for t in trials)
        parts = [_running_part(t.last_result or {}) for t in running]
        finished = [
            t.last_result.get(reported.METRIC)
            for t in trials
            if t.is_finished() and not reported.failed(t.last_result)
        ]
        best = self.objective.best(x for x in finished if isinstance(x, float))
        name = self.objective.metric
        shown = f"best {name} so far {best:.4f}" if best is not None else "no trial finished yet"
        total = f"/{self.n_trials}" if self.n_trials else ""
        line = f"{clock(now - self.began)} elapsed | {done}{total} done | "
        paused = sum(t.status == Trial.PAUSED for t in trials)
        line += f"{paused} paused at a rung | " if paused else ""
        line += ", ".join(parts) + f" | {shown}"
        left = None
        if self.durations and self.n_trials:
            mean = sum(self.durations) / len(self.durations)
            left = (self.n_trials - done) * mean / max(1, min(self.concurrency, len(running)))
        timer = budget.active()
        if timer is not None:
            line += f" | budget {clock(timer.spent())} of {clock(timer.total_s)}"
            left = timer.left() if left is None else min(left, timer.left())
        if left is not None:
            line += f" | ~{clock(left)} left"
        return line


def _running_part(r: dict) -> str:
    if reported.METRIC not in r:
        return "a trial starting"
    return (
        f"trial {r.get(reported.TRIAL_ATTR, '?')} eval {r.get(reported.TIME_ATTR, '?')}"
        f"/{r.get(reported.PLANNED_ATTR) or '?'} {r[reported.METRIC]:.4f}"
    )


def ray_error(trial) -> str:
    """The error Ray recorded for a trial (its text file in the trial's Tune folder, written
    before the callbacks run), without Ray's `Failure # n` header."""
    path = trial.error_file
    text = Path(path).read_text(errors="replace") if path and Path(path).exists() else ""
    lines = [x for x in text.splitlines() if x.strip() and not x.startswith("Failure #")]
    return "\n".join(lines)


def worker_died_message(ray_error: str) -> str:
    """What to tell a user whose trial lost its worker process."""
    import psutil

    mem = psutil.virtual_memory()
    return (
        f"the trial's worker process died ({first_line(ray_error)[:200]}). It was killed "
        "from outside, most often by the kernel's out-of-memory killer: this machine has "
        f"{mem.total / 2**30:.1f} GiB of memory ({mem.available / 2**30:.1f} GiB free now). "
        "If it ran out of memory, lower hardware.concurrency, train.batch_size or "
        "data.max_length, or use hardware.quantization=nf4; the other trials go on."
    )
