"""OpenBox's advisors: the asynchronous advisor's list of running configurations (a start
point or a stopped trial is added or removed by hand) and replacing an advisor's history
(restored from the sweep's saved one)."""

from __future__ import annotations

import tempfile
from typing import Any

from lorahpo.compat import attribute, broken, check_tested

PACKAGE = "openbox"
TESTED = ">=0.9,<0.10"
check_tested(PACKAGE, TESTED)


def mark_running(advisor: Any, config: Any) -> None:
    """Tell an asynchronous advisor that `config` runs now (no-op for the serial one)."""
    if hasattr(advisor, "running_configs"):
        advisor.running_configs.append(config)


def unmark_running(advisor: Any, config: Any) -> None:
    """Forget a running `config` that will bring no observation."""
    if hasattr(advisor, "running_configs") and config in advisor.running_configs:
        advisor.running_configs.remove(config)


def set_history(advisor: Any, history: Any) -> None:
    """Start an advisor from a saved history."""
    attribute(advisor, "history", PACKAGE)
    advisor.history = history


def contract() -> None:
    """A real asynchronous advisor: a configuration marked running is in the list it reads
    when proposing, and a replaced history is the one it reports."""
    from openbox import space as sp
    from openbox.core.async_batch_advisor import AsyncBatchAdvisor
    from openbox.utils.history import History

    cs = sp.Space(seed=0)
    cs.add_variables([sp.Real("x", 0.0, 1.0)])
    with tempfile.TemporaryDirectory() as out:  # OpenBox writes a log file there
        advisor = AsyncBatchAdvisor(
            cs,
            num_objectives=1,
            batch_size=2,
            initial_trials=1,
            output_dir=out,
            logger_kwargs={"stream": False},
        )
    config = cs.sample_configuration()
    mark_running(advisor, config)
    if config not in attribute(advisor, "running_configs", PACKAGE):
        raise broken(PACKAGE, "AsyncBatchAdvisor.running_configs does not hold running ones")
    unmark_running(advisor, config)
    history = History(num_objectives=1, config_space=cs)
    set_history(advisor, history)
    if advisor.get_history() is not history:
        raise broken(PACKAGE, "an advisor's history, replaced, is not what get_history() gives")
