"""Shared helpers: the real CLI in a subprocess, and real Hydra composition in-process."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

HAS_OPENBOX = importlib.util.find_spec("openbox") is not None
NEEDS_OPENBOX = pytest.mark.skipif(
    not HAS_OPENBOX, reason='the openbox extra is not installed: pip install -e ".[openbox]"'
)


CLI_ENV = {"HYDRA_FULL_ERROR": "0", "TOKENIZERS_PARALLELISM": "false"}  # what entry runs get


def run_cli(
    *args: str, script: str = "train.py", timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run an entry script as a user would, from the repository root."""
    env = {**os.environ, **CLI_ENV, **(env or {})}
    return subprocess.run(
        [sys.executable, script, *args],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def run_here(*args: str, script: str = "train.py") -> subprocess.CompletedProcess:
    """Run an entry script in this process as `run_cli` runs it in a new one: the same
    arguments, Hydra app, exit status and output, without paying for the imports again (a
    new process spends most of a smoke run importing torch and transformers). For runs that
    need no environment of their own; the environment and logging are restored after."""
    import contextlib
    import io
    import logging
    import runpy

    from hydra.core.global_hydra import GlobalHydra

    out, err = io.StringIO(), io.StringIO()
    argv, environ, cwd = sys.argv, dict(os.environ), os.getcwd()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    os.environ.update(CLI_ENV)
    sys.argv = [str(ROOT / script), *args]
    GlobalHydra.instance().clear()
    code = 0
    try:
        os.chdir(ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(str(ROOT / script), run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        os.chdir(cwd)
        sys.argv = argv
        os.environ.clear()
        os.environ.update(environ)
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        GlobalHydra.instance().clear()
    return subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())


SMOKE = ["debug=smoke", "search/space=grid", "hydra.sweeper.resume=false"]  # seconds a trial


def start_sweep(sweep_dir: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """`python train.py -m` of smoke trials into `sweep_dir`, left running."""
    cmd = [sys.executable, "train.py", "-m", *SMOKE, *args, f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def read_events(sweep_dir: Path) -> list[dict]:
    """The sweep's trial events so far (a line being written is skipped)."""
    from lorahpo.rundir import read_jsonl as read_written

    return read_written(sweep_dir / "trial_events.jsonl")


def wait_for_event(sweep_dir: Path, event: str, timeout: float = 120, **match) -> dict:
    """The first trial event of this kind (and these fields) once the sweep has written it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for e in read_events(sweep_dir):
            if e["event"] == event and all(e.get(k) == v for k, v in match.items()):
                return e
        time.sleep(0.2)
    raise AssertionError(f"no {event} event within {timeout} s")


def compose_cfg(*overrides: str):
    """The config `train.py` would see for these overrides (hydra resolvers included)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # as in a real run: ${hydra:...} resolves
    return cfg


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def toy_csvs(tmp_path):
    from lorahpo.toy import write_toy_csvs

    return write_toy_csvs(tmp_path / "data", n_questions=30, seed=1)


if os.environ.get("PYTEST_XDIST_WORKER"):
    # three tests at a time on two cores: one thread each for torch here, in the entry scripts
    # and in Ray's trial workers (Ray keeps a value it finds), or they spin against each other
    os.environ["OMP_NUM_THREADS"] = "1"


SEATS = 2  # training-run (cli) tests at once: one core each; the third worker's test waits


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Tests run three at a time (pytest-xdist): a sweep test spends much of its time waiting
    on Ray and on its processes' imports, which a third test fills. A test marked `alone`
    waits until the sweeps (ray and faults tests, two trials each) are done and keeps them
    waiting while it runs (module fixtures it sets up included), with at most one `cli` test
    beside it: a turnstile in front of a shared room, and two seats for `cli` tests of which
    the `alone` test holds one. `unit` tests (in-process, short) go on beside anything."""
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run_id or item.get_closest_marker("unit"):  # -n 0: one at a time anyway
        yield
        return
    import fcntl
    import tempfile

    locks = Path(tempfile.gettempdir()) / f"lorahpo-tests-{run_id}"
    if item.get_closest_marker("cli"):
        with _seat(locks):
            yield
        return
    alone = item.get_closest_marker("alone") is not None
    with open(f"{locks}.turnstile", "w") as turnstile, open(f"{locks}.room", "w") as room:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(room, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
            yield
            return
        with open(f"{locks}.seat0", "w") as seat:
            fcntl.flock(seat, fcntl.LOCK_EX)
            yield


@contextlib.contextmanager
def _seat(locks: Path):
    """One of the SEATS `cli` seats, whichever frees first."""
    import fcntl

    while True:
        for n in range(SEATS):
            with open(f"{locks}.seat{n}", "w") as seat:
                try:
                    fcntl.flock(seat, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                yield
                return
        time.sleep(0.1)


TIERS = ("unit", "cli", "ray", "faults")  # by cost; pyproject.toml describes each


def pytest_collection_modifyitems(config, items):
    """Every test belongs to exactly one tier, so that `-m` selects the suite by cost. The
    costly tiers run first, then the `alone` tests with the cli and unit tiers beside them,
    so that two at a time the suite ends on short tests instead of waiting on a long one."""
    rank = {}
    for item in items:
        tiers = {m.name for m in item.iter_markers() if m.name in TIERS}
        if len(tiers) != 1:
            raise pytest.UsageError(
                f"{item.nodeid} has tier marker(s) {sorted(tiers)}: give it exactly one of "
                f"{', '.join(TIERS)}"
            )
        alone = item.get_closest_marker("alone") is not None
        rank[item.nodeid] = (
            2 if alone else {"faults": 0, "ray": 1, "cli": 3, "unit": 4}[tiers.pop()]
        )
    items.sort(key=lambda item: rank[item.nodeid])  # stable: file order within a rank
