"""The Hydra side of the sweeper: registration and the `Sweeper` interface.

The work is in `lorahpo.sweep.driver`; this module stays thin so that Hydra's plugin scan
(which imports every module under `hydra_plugins`) costs nothing.
"""

# no `from __future__ import annotations`: Hydra's plugin scan executes this module outside
# sys.modules, where dataclasses cannot resolve string annotations.
import os
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class LorahpoSweeperConf:
    _target_: str = "hydra_plugins.lorahpo_sweeper.lorahpo_sweeper.LorahpoSweeper"
    # continue the sweep already in hydra.sweep.dir: finished trials are kept, the rest run
    resume: bool = False
    # a worker keeps the tokenised data and the loaded base model for its next trial
    # (false: every trial loads its own, as a plain Hydra job would)
    warm_trials: bool = True
    # while trials run, a status line this often (seconds)
    status_every: float = 30.0


ConfigStore.instance().store(
    group="hydra/sweeper", name="lorahpo", node=LorahpoSweeperConf, provider="lorahpo"
)


class LorahpoSweeper(Sweeper):
    """Search algorithm (`search`) x scheduler (`scheduler`) over `search.space`, on Ray Tune;
    every trial is the task run as an ordinary Hydra job in `<sweep_dir>/<n>/`. Its parameters
    are LorahpoSweeperConf's (`resume`, `warm_trials`; `status_every`: seconds), whose
    defaults are the only ones: Hydra passes every field."""

    def __init__(self, resume: bool, warm_trials: bool, status_every: float) -> None:
        self.resume, self.warm_trials, self.status_every = resume, warm_trials, status_every
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.config: DictConfig | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context, self.task_function, self.config = (hydra_context, task_function, config)

    def sweep(self, arguments: list[str]) -> Any:
        if not self.config.hardware.ray_address:
            # a local Ray instance: keep its services on the loopback interface (Ray reads
            # this when it is first imported, which is below)
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        from lorahpo.errors import UserError, report_user_error
        from lorahpo.sweep.driver import run_sweep

        try:
            return run_sweep(
                self.hydra_context,
                self.task_function,
                self.config,
                arguments,
                self.resume,
                self.warm_trials,
                self.status_every,
            )
        except UserError as e:
            report_user_error(e)
