"""A sweep's study in optuna-dashboard: `python -m lorahpo.dashboard <sweep_dir>`.

Every sweep keeps an Optuna study in `<sweep_dir>/study.db`, whatever its searcher (see
`lorahpo.sweep.study`); this opens it in the browser dashboard, on this machine only unless
`--host` says otherwise. Needs the `dashboard` extra: `pip install "lorahpo[dashboard]"`.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from lorahpo.errors import UserError, exit_on_user_error
from lorahpo.sweep.study import STUDY_FILE


def study_storage(sweep_dir: Path) -> str:
    """The sweep's study as a storage URL, or a message naming what is wrong."""
    db = sweep_dir.expanduser().resolve() / STUDY_FILE
    if not db.is_file():
        raise UserError(
            f"{db} does not exist: give the folder of a sweep (the hydra.sweep.dir of a "
            "`python train.py -m` run); its study.db is written after its first trial ends."
        )
    return f"sqlite:///{db}"


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lorahpo.dashboard", description=__doc__)
    parser.add_argument("sweep_dir", type=Path, help="a sweep's folder (holds study.db)")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to open it to others")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    storage = study_storage(args.sweep_dir)
    if importlib.util.find_spec("optuna_dashboard") is None:
        raise UserError(
            "the dashboard needs the optuna-dashboard package, which is not installed: "
            'pip install "lorahpo[dashboard]".'
        )
    from optuna_dashboard import run_server

    print(f"{storage} on http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    run_server(storage, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
