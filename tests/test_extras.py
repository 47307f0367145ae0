"""Optional extras, as a user without them meets them: one message naming the extra, before
any trial or folder exists."""

import pytest

from conftest import HAS_OPENBOX, run_cli


@pytest.mark.cli
@pytest.mark.skipif(HAS_OPENBOX, reason="runs where the openbox extra is absent (as in CI)")
def test_tune_openbox_without_the_extra_stops_naming_it(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_cli("openbox.max_runs=2", f"hydra.sweep.dir={sweep_dir}", script="tune_openbox.py")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'pip install "lorahpo[openbox]"' in proc.stderr
    assert "Traceback" not in proc.stderr and not sweep_dir.exists()


@pytest.mark.cli
def test_the_dashboard_names_a_folder_without_a_study(tmp_path):
    proc = run_cli("lorahpo.dashboard", str(tmp_path), script="-m")
    assert proc.returncode == 2
    assert f"{tmp_path.resolve() / 'study.db'} does not exist" in proc.stderr
