"""Contracts for every internal of another library that lorahpo.compat uses: each fails with a
message naming the library and its version when the internal changes."""

import importlib
import pkgutil

import pytest

import lorahpo.compat

pytestmark = pytest.mark.unit

MODULES = sorted(m.name for m in pkgutil.iter_modules(lorahpo.compat.__path__))


def test_every_compat_module_states_its_tested_versions_and_a_contract():
    assert MODULES == [
        "openbox",
        "ray_hyperopt",
        "ray_optuna",
        "torch_hooks",
        "transformers_trainer",
    ]
    for name in MODULES:
        module = importlib.import_module(f"lorahpo.compat.{name}")
        assert module.PACKAGE and module.TESTED and callable(module.contract), name


@pytest.mark.parametrize("name", MODULES)
def test_contract(name):
    module = importlib.import_module(f"lorahpo.compat.{name}")
    if lorahpo.compat.installed(module.PACKAGE) is None:
        pytest.skip(f"{module.PACKAGE} is not installed (an optional extra)")
    module.contract()


def test_a_changed_internal_is_named_with_library_and_version():
    from lorahpo.compat import CompatError, attribute, installed

    with pytest.raises(CompatError) as e:
        attribute(object(), "_ot_study", "ray")
    assert f"ray {installed('ray')}" in str(e.value) and "_ot_study" in str(e.value)


def test_an_untested_version_is_said_once(monkeypatch):
    from lorahpo import compat

    monkeypatch.setattr(compat, "_warned", set())
    with pytest.warns(UserWarning, match=r"tested with torch<1\.0"):
        compat.check_tested("torch", "<1.0")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compat.check_tested("torch", "<1.0")  # said once per library


def test_no_private_internals_outside_compat():
    """Outside lorahpo.compat, no attribute of another library's object that starts with an
    underscore (our own `self._x` is fine)."""
    import ast
    from pathlib import Path

    root = Path(lorahpo.compat.__file__).parents[1]
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if "compat" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                offenders.append(f"{path.relative_to(root)}:{node.lineno} .{node.attr}")
    assert not offenders, offenders


def test_a_subset_evaluation_never_becomes_the_best_checkpoint(tmp_path):
    """The best-metric hook on a real HF Trainer: an evaluation of train.eval_subset's rows
    leaves the Trainer's best alone; a whole-fold one sets it."""
    import torch
    from transformers import TrainingArguments

    from lorahpo.trainer import EvalScorer, InOrderEvalTrainer

    args = TrainingArguments(
        output_dir=str(tmp_path), metric_for_best_model="log_loss", use_cpu=True, report_to=[]
    )
    scorer = EvalScorer()
    trainer = InOrderEvalTrainer(
        model=torch.nn.Linear(2, 2), args=args, compute_metrics=scorer, subset_ds=[]
    )
    scorer.subset = True
    assert not trainer._determine_best_metric({"eval_log_loss": 0.1}, None)
    assert trainer.state.best_metric is None
    scorer.subset = False
    assert trainer._determine_best_metric({"eval_log_loss": 0.5}, None)
    assert trainer.state.best_metric == 0.5
