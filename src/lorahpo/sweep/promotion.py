"""Promotion-type ASHA (`scheduler=asha scheduler.type=promotion`): a trial that reaches a
rung pauses there, its checkpoint kept, and comes back when it earns promotion.

The rule is the ASHA paper's (Li et al. 2020, Algorithm 2; Syne Tune's `type="promotion"`):
a paused trial at rung k is promoted once it is in the best 1/reduction_factor of all the
trials that reached rung k, and promotions go first, from the highest rung down; a free slot
with nothing to promote starts a new trial. Ray Tune's own ASHAScheduler is the stopping
type: a trial that is not in the top fraction when it arrives is stopped for good, so the
first trials at a rung (judged against few) pass and the later ones are judged against many.

A paused trial frees its slot: the scheduler tells the sweep's gate on new trials
(budget_gate.TrialGate) through the search algorithm's `on_pause`/`on_unpause`, the way
Ray's BOHB scheduler tells its searcher. When the search
can start nothing more and nothing runs, no rung can grow, so the paused trials are done:
the best one at the highest rung runs on if no trial has completed yet (a sweep always ends
with a trained adapter); otherwise they stop, or, at the end of a time budget, stay paused
for a resume with a larger one.
"""

from __future__ import annotations

from pathlib import Path

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from lorahpo.objective import Objective
from lorahpo.sweep import budget, ledger, reported


def promotable(
    rung: dict[str, float], promoted: set[str], factor: float, objective: Objective
) -> list[str]:
    """The trials at a rung that have earned promotion and have not had it yet, best first:
    the top `len(rung) // factor` of the rung's results (the paper's top_k)."""
    ranked = sorted(rung, key=lambda t: objective.best_first(rung[t]))
    return [t for t in ranked[: int(len(rung) // factor)] if t not in promoted]


class PromotionASHA(FIFOScheduler):
    """Pauses trials at the rungs (in evaluations) and resumes the promotable ones first.

    `rungs`: evaluations at which trials are compared; `factor`: 1/factor of the trials at a
    rung go on (ASHA's reduction factor).
    """

    def __init__(
        self, sweep_dir: Path, rungs: list[int], factor: float, objective: Objective
    ) -> None:
        super().__init__()
        self.sweep_dir, self.rungs, self.factor = sweep_dir, sorted(rungs), factor
        self.objective = objective
        self.results: dict[int, dict[str, float]] = {r: {} for r in self.rungs}
        self.promoted: dict[int, set[str]] = {r: set() for r in self.rungs}

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        """At a rung the trial has not reached before: continue if it is promotable on
        arrival, else pause. A resumed trial's re-reported evaluations change nothing."""
        if reported.failed(result) or reported.METRIC not in result:
            return TrialScheduler.CONTINUE
        t = result[reported.TIME_ATTR]
        reached = [r for r in self.rungs if r <= t]
        if not reached or trial.trial_id in self.results[reached[-1]]:
            return TrialScheduler.CONTINUE
        rung = reached[-1]
        self.results[rung][trial.trial_id] = result[reported.METRIC]
        if not reported.stopped_early(result):  # its last evaluation: it ends by itself
            return TrialScheduler.CONTINUE
        if trial.trial_id in promotable(
            self.results[rung], self.promoted[rung], self.factor, self.objective
        ):
            self.promoted[rung].add(trial.trial_id)
            return TrialScheduler.CONTINUE
        ledger.record_event(self.sweep_dir, trial.trial_id, ledger.Event.PAUSED, rung=rung)
        tune_controller.search_alg.on_pause(trial.trial_id)
        return TrialScheduler.PAUSE

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        """A promotable paused trial (highest rung first), else a new one; when neither can
        come and nothing runs, what is left paused is settled (the module's docstring)."""
        trials = tune_controller.get_trials()
        paused = {t.trial_id: t for t in trials if t.status == Trial.PAUSED}
        for rung in reversed(self.rungs):
            for trial_id in promotable(
                self.results[rung], self.promoted[rung], self.factor, self.objective
            ):
                if trial_id in paused:
                    return self._promote(tune_controller, paused[trial_id], rung)
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        busy = any(t.status == Trial.RUNNING for t in trials)
        if paused and not busy and tune_controller.search_alg.is_finished():
            return self._settle(tune_controller, trials, paused)
        return None

    def _promote(self, tune_controller, trial: Trial, rung: int) -> Trial:
        self.promoted[rung].add(trial.trial_id)
        tune_controller.search_alg.on_unpause(trial.trial_id)
        return trial

    def _settle(self, tune_controller, trials: list[Trial], paused: dict[str, Trial]):
        """Nothing can be promoted by the rule any more: run the best paused trial on if none
        has completed (also in an earlier run of a resumed sweep: Ray restores its trials);
        else end a spent time budget's sweep (they stay paused) or stop them."""
        if not any(t.status == Trial.TERMINATED and _completed(t.last_result) for t in trials):
            for rung in reversed(self.rungs):
                waiting = {t: v for t, v in self.results[rung].items() if t in paused}
                if waiting:
                    best = min(waiting, key=lambda t: self.objective.best_first(waiting[t]))
                    return self._promote(tune_controller, paused[best], rung)
        timer = budget.active()
        if timer is not None and not timer.ended and not timer.allows_new_trial():
            timer.end_now()
            return None
        for trial in paused.values():
            tune_controller.stop_trial(trial)
        return None

    def debug_string(self) -> str:
        sizes = ", ".join(f"{r}: {len(self.results[r])}" for r in self.rungs)
        return f"promotion-type ASHA, trials per rung {{{sizes}}}"


def _completed(result: dict | None) -> bool:
    """Whether a trial's last result is its last planned evaluation (not a failure)."""
    return bool(result) and not reported.failed(result) and not reported.stopped_early(result)
