"""Which failed trials Ray Tune retries: only those whose worker or node was lost.

`FailureConfig(max_failures=n)` makes Ray retry a trial after any error. A trial whose own
code raised (a bad config, a diverged loss, CUDA out of memory) would fail the same way again
and cost another trial's time; a trial whose worker process died or whose node left the
cluster (Ray raises `RayActorError` for both) deserves another try, and continues from its
latest checkpoint (lorahpo.resume). Ray has no setting for the difference, so the driver
wraps the two `Trial` methods that decide it: `handle_error` sees the exception,
`should_recover` answers whether to retry.
"""

from __future__ import annotations

_task_failed: set[str] = set()  # ids of trials whose own code raised (this driver process)


def lost_worker(exc: BaseException | None) -> bool:
    """Whether `exc` means the trial's worker process or its node was lost."""
    from ray.exceptions import RayActorError, RayTaskError

    if isinstance(exc, RayTaskError):
        exc = exc.as_instanceof_cause()
    return isinstance(exc, RayActorError)


def retry_only_lost_workers() -> None:
    """Install the policy in this process (once)."""
    from ray.tune.experiment import Trial

    if getattr(Trial.should_recover, "_retries_lost_workers_only", False):
        return
    handle_error, should_recover = Trial.handle_error, Trial.should_recover

    def handle_error_noting_cause(self, exc=None, *args, **kwargs):
        if not lost_worker(exc):
            _task_failed.add(self.trial_id)
        return handle_error(self, exc, *args, **kwargs)

    def should_recover_if_lost(self):
        return self.trial_id not in _task_failed and should_recover(self)

    should_recover_if_lost._retries_lost_workers_only = True
    Trial.handle_error = handle_error_noting_cause
    Trial.should_recover = should_recover_if_lost
