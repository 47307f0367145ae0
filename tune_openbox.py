"""OpenBox Bayesian optimisation (GP surrogate, EI, asynchronous) of the train.py task.

    python tune_openbox.py [any train.py override] openbox.max_runs=N [openbox.init_trials=K]
                           [openbox.seed=S] [hydra.sweep.dir=DIR]

It composes the same config tree as train.py (model=, hardware=, data=, the search space in
search.space and sweep overrides such as 'lora.r=choice(8,16)'), and runs the same sweep as
`python train.py -m search=gp scheduler=fifo`: every trial a Hydra run directory, trials on
Ray with the hardware's resources, OpenBox's history in <sweep_dir>/openbox_history.json.
Pointed at an existing sweep directory, it continues that sweep from its history.
"""

import sys
from pathlib import Path

OPENBOX_KEYS = {  # openbox.* -> the search config key it sets
    "openbox.max_runs": "search.n_trials",
    "openbox.init_trials": "search.n_initial",
    "openbox.seed": "search.seed",
}


def sweep_arguments(argv: list[str]) -> list[str]:
    """This command line as a train.py sweep with OpenBox as the search algorithm."""
    args = ["-m", "search=gp", "scheduler=fifo"]
    for arg in argv:
        key, sep, value = arg.partition("=")
        args.append(f"{OPENBOX_KEYS[key]}={value}" if sep and key in OPENBOX_KEYS else arg)
        if key == "hydra.sweep.dir" and (Path(value) / ".tune").exists():
            args.append("hydra.sweeper.resume=true")  # continue from its history
    return args


if __name__ == "__main__":
    import runpy

    train = Path(__file__).with_name("train.py")
    sys.argv = [str(train), *sweep_arguments(sys.argv[1:])]
    runpy.run_path(str(train), run_name="__main__")  # train.py's own Hydra app, as a sweep
