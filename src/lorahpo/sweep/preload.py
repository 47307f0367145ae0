"""Trial workers that have imported the training libraries before their first trial.

A local Ray instance starts a pool of idle workers while the driver connects and hands them to
the first actors that ask (here: the trials). Ray's `preload_python_modules` makes each import
a list of modules as it starts, so the imports a worker's first trial would pay (torch,
transformers + peft + the Trainer: ~6 s on a 2-core machine) overlap Ray's start and the
sweep's set-up instead of delaying the first training step of every slot.

Ray hands pool workers only to actors without a runtime env of their own, so the trials' actor
class takes the job's (`tune_actors_take_the_job_env`) and a local sweep passes its
environment variables by inheritance, set before `ray.init`.

Only for sweeps whose trials use no GPU: importing the Trainer imports peft and bitsandbytes,
and bitsandbytes asks CUDA for its devices at import. In a worker not yet given a trial, that
would fix the GPUs it sees to all of them before Ray sets the trial's CUDA_VISIBLE_DEVICES;
GPU trials therefore import in their own worker as before (a 7-8B trial's model load takes
minutes, against these seconds).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from omegaconf import DictConfig

# what a trial imports before its first training step, in the order it needs them
MODULES = (
    "torch",
    "transformers.trainer",  # imports peft and bitsandbytes when installed
    "peft",
    "ray.tune",
    "hydra.core.utils",
    "sklearn.model_selection",  # the folds
    "lorahpo.train",
    "lorahpo.trainer",
    "lorahpo.resume",
    "lorahpo.base_cache",
    "lorahpo.sweep.trial",
)


def applies(hw: DictConfig) -> bool:
    """Preload for a local Ray instance (not a cluster, given by hardware.ray_address or
    RAY_ADDRESS) whose trials use no GPU."""
    local = not hw.get("ray_address") and not os.environ.get("RAY_ADDRESS")
    return local and float(hw.gpus_per_trial) == 0


def system_config(hw: DictConfig) -> dict[str, Any]:
    """Ray's settings for a local instance: `hardware.concurrency` prestarted workers (Ray's
    own cap, one per CPU, would import the libraries in every idle worker of a large
    machine), each importing `MODULES`."""
    return {
        "prestart_worker_first_driver": True,
        "worker_maximum_startup_concurrency": max(1, int(hw.concurrency)),
        "preload_python_modules": list(MODULES),
    }


def match_torch_threads() -> int | None:
    """Give torch the thread count Ray chose for this trial's actor (OMP_NUM_THREADS = its
    CPUs): a preloaded worker imported torch before that was set, and torch read it then.
    Returns torch's thread count (None before torch is imported)."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if "torch" not in sys.modules:
        return None  # it reads OMP_NUM_THREADS when the trial imports it
    import torch

    if threads.isdigit() and int(threads) > 0 and torch.get_num_threads() != int(threads):
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def tune_actor_env() -> dict[str, str]:
    """The environment variables Ray Tune would give its trial actors as their own runtime
    env (ray.tune.execution.class_cache): its defaults and the driver's values of those it
    propagates."""
    from ray.tune.execution import class_cache

    propagated = {k: os.environ[k] for k in class_cache.ENV_VARS_TO_PROPAGATE if k in os.environ}
    return {**class_cache.DEFAULT_ENV_VARS, **propagated}


def tune_actors_take_the_job_env() -> None:
    """Let Tune create its trial actor class without a runtime env of its own: Ray hands
    prestarted workers only to actors without one. The actors still get `tune_actor_env()`,
    through the job's runtime env on a cluster and by inheritance on a local instance."""
    import ray
    from ray.tune.execution import class_cache

    def get(self, trainable_cls):
        if trainable_cls not in self._cache:
            self._cache[trainable_cls] = ray.remote(trainable_cls)
        return self._cache[trainable_cls]

    class_cache._ActorClassCache.get = get


_preloaded: bool | None = None


def preloaded() -> bool:
    """Whether this worker had imported the training libraries before its first trial
    (answered at the first trial's start, then remembered)."""
    global _preloaded
    if _preloaded is None:
        _preloaded = "transformers.trainer" in sys.modules
    return _preloaded
