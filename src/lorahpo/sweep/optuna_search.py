"""Ray Tune's OptunaSearch, telling Optuna the truth about trials the scheduler stopped.

Ray's OptunaSearch tells a trial that the scheduler stopped as COMPLETE with its last value:
a loss after a fraction of the planned training, still near uniform, then reads as the final
result of a bad configuration, and TPE models that noise. Here such a trial is told as
PRUNED; its intermediate values (one per evaluation, reported as the trial ran) stay in the
study, and Optuna's TPE ranks pruned trials by how far they got and what they reached there.
"""

from __future__ import annotations

from ray.tune.search.optuna import OptunaSearch

from lorahpo.sweep.algorithms import stopped_early


class StopAwareOptunaSearch(OptunaSearch):
    """OptunaSearch whose stopped trials are PRUNED, not COMPLETE."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if not error and stopped_early(result) and trial_id not in self._completed_trials:
            from optuna.trial import TrialState

            self._ot_study.tell(self._ot_trials[trial_id], None, state=TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result, error)

    def study(self):
        """The Optuna study behind the search (for tests and analysis)."""
        return self._ot_study
