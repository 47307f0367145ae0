"""Every key the code reads exists in every option of every config group, as a sweep's trial
sees it (the typed schema, lorahpo.schema); a misspelt key or a wrong type stops at
composition; a trial's configuration error is explained with the key and the file."""

from __future__ import annotations

import ast

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from lorahpo.schema import GROUPS, TrainSchema
from lorahpo.sweep import config_failure
from lorahpo.sweep.preflight import preflight

from conftest import CONF, HAS_OPENBOX, ROOT, compose_cfg

pytestmark = pytest.mark.unit

OPTIONS = [
    (str(group.relative_to(CONF)), option.stem)
    for group in [g for g in sorted(CONF.iterdir()) if g.is_dir()] + [CONF / "search" / "space"]
    for option in sorted(group.glob("*.yaml"))
]
# options a sweep cannot start here: composed only (weights that are not on this machine,
# trackers and searchers whose optional package is not installed)
NOT_HERE = {
    ("model", "deepseek"),
    ("model", "deepseek_r1_8b"),
    ("model", "mistral"),
    ("model", "mistral_7b"),
    ("experiment", "deepseek_r1_8b_reference"),
    ("logger", "wandb"),
} | (set() if HAS_OPENBOX else {("search", "gp")})

# how the code names a config group it was handed (a parameter, or an attribute of one)
ALIASES = {
    ("hw",): "hardware",
    ("sched",): "scheduler",
    ("lg",): "logger",
    ("model_cfg",): "model",
    ("train_cfg",): "train",
    ("lora_cfg",): "lora",
    ("data_cfg",): "data",
    ("search",): "search",
    ("ctx", "search"): "search",
    ("self", "search"): "search",
}
CONFIG_NAMES = {"cfg", "config", "defaults", "job_config"}  # a whole training config
NOT_KEYS = {"get", "items", "keys", "values", "copy", "pop", "_get_node"}


def _chain(node: ast.AST) -> list[str] | None:
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(names)]


def config_reads(source: str) -> set[tuple[str, str]]:
    """(group, key) of every config read in `source` that names its group: `cfg.data.seed`,
    `run.cfg.model.path`, `hw.concurrency`, `sched.get("max_t")`. A lower bound: a group
    passed under another name is not seen (the composed configs below check the rest)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        names = _chain(node) if isinstance(node, ast.Attribute) else None
        if not names:
            continue
        if names[-1] == "get":  # x.get("key"): the key is the call's first argument
            continue
        for i in range(len(names) - 2):
            if names[i] in CONFIG_NAMES and names[i + 1] in GROUPS:
                found.add((names[i + 1], names[i + 2]))
        for prefix, group in ALIASES.items():
            if tuple(names[: len(prefix)]) == prefix and len(names) > len(prefix):
                found.add((group, names[len(prefix)]))
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            owner = _chain(node.func.value) or []
            group = ALIASES.get(tuple(owner[-2:])) or ALIASES.get(tuple(owner[-1:]))
            if len(owner) >= 2 and owner[-2] in CONFIG_NAMES and owner[-1] in GROUPS:
                group = owner[-1]
            if group:
                found.add((group, node.args[0].value))
    return {(g, k) for g, k in found if k not in NOT_KEYS}


CODE = [*sorted((ROOT / "src").rglob("*.py")), ROOT / "train.py", ROOT / "infer.py"]
READS = sorted(set().union(*(config_reads(p.read_text()) for p in CODE)))


def test_the_scan_sees_the_reads_it_must_see():
    assert len(READS) > 60
    for read in [("data", "seed"), ("hardware", "max_retries"), ("scheduler", "type")]:
        assert read in READS
    snippet = 'def f(cfg, hw, sched):\n  cfg.data.sed; hw.gpu_count; sched.get("budget")\n'
    assert config_reads(snippet) == {
        ("data", "sed"),
        ("hardware", "gpu_count"),
        ("scheduler", "budget"),
    }


def test_every_key_the_code_reads_is_in_the_schema():
    unknown = [f"{g}.{k}" for g, k in READS if k not in GROUPS[g].__dataclass_fields__]
    assert not unknown, f"read by the code, declared nowhere (lorahpo/schema.py): {unknown}"


def _missing(cfg, prefix: str = "") -> list[str]:
    out = []
    for key in cfg:
        if OmegaConf.is_missing(cfg, key):
            out.append(f"{prefix}{key}")
        elif OmegaConf.is_dict(cfg._get_node(key)):
            out += _missing(cfg._get_node(key), f"{prefix}{key}.")
    return out


@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_option_has_every_key_a_sweep_trial_reads(tmp_path, toy_csvs, group, option):
    """The config a sweep's trial composes (with the sweep's own overrides: rung
    evaluations, subset, paths) for this option: typed by the schema, nothing left unset,
    every key the code reads there."""
    base = [f"hydra.sweep.dir={tmp_path}", f"{group}={option}"]
    if (group, option) == ("data", "csv"):
        base.append(f"data.train_path={toy_csvs[0]}")
    if (group, option) in NOT_HERE:
        trial = compose_cfg(*base)
    else:
        config = compose_cfg(*base)
        plan = preflight(config, [], lambda o: compose_cfg(*base, *o))
        trial = compose_cfg(*base, *plan.fixed)
    assert OmegaConf.get_type(trial) is TrainSchema
    trial = OmegaConf.masked_copy(trial, [k for k in trial if k != "hydra"])
    assert _missing(trial) == []
    absent = [f"{g}.{k}" for g, k in READS if k not in trial[g]]
    assert not absent, f"{group}={option}: the code reads {absent}, which it lacks"


def test_a_misspelt_key_or_a_wrong_type_stops_at_composition():
    with pytest.raises(ConfigCompositionException, match="data.sed"):
        compose_cfg("data.sed=3")
    with pytest.raises(ConfigCompositionException) as e:
        compose_cfg("hardware.max_retries=twice")
    assert "hardware.max_retries" in str(e.value.__cause__)


def test_a_configuration_error_names_the_key_and_the_file(tmp_path):
    with pytest.raises(ConfigCompositionException) as e:
        compose_cfg("lora.r=big")
    found = config_failure.problem(e.value)
    assert found[config_failure.KEY_ATTR] == "lora.r"
    cfg = compose_cfg("data=csv", "model.lora_target_modules=???")
    with pytest.raises(Exception) as e:
        cfg.lora.target_modules  # noqa: B018 (the read a trial would make)
    found = {**config_failure.problem(e.value), "trial_num": 3}
    assert found[config_failure.KEY_ATTR] == "model.lora_target_modules"
    text = config_failure.explain(found, cfg, {"train.lr"}, tmp_path)
    assert "trial 3 failed on its configuration (model.lora_target_modules: " in text
    assert f"model=tiny config ({CONF / 'model' / 'tiny.yaml'})" in text
    assert str(tmp_path / "3" / "error.txt") in text
    found = {config_failure.KEY_ATTR: "data.seed", config_failure.MESSAGE_ATTR: "x"}
    assert str(CONF / "data" / "csv.yaml") in config_failure.explain(found, cfg, {}, tmp_path)
    found[config_failure.KEY_ATTR] = "train.lr"
    assert "in the search space" in config_failure.explain(found, cfg, {"train.lr"}, tmp_path)
    assert config_failure.problem(ValueError("not a config error")) is None
