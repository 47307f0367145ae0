"""The docs cannot drift: every config key, config option, file and module that README.md
and docs/*.md name exists, the searcher tables are the registry's own, and the layout names
every module of the library."""

import functools
import importlib.util
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lorahpo.config_keys import leaf_keys
from lorahpo.sweep import searchers

from conftest import CONF, ROOT, compose_cfg

pytestmark = pytest.mark.unit
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GROUPS = ("data", "model", "hardware", "search", "scheduler", "logger", "debug", "experiment")
CODE = re.compile(r"`([^`\n]+)`|```[a-z]*\n(.*?)```", re.S)
KEY = re.compile(
    r"(?<![\w./-])((?:train|lora|data|model|hardware|search|scheduler|logger|paths|openbox)"
    r"(?:\.[a-z_][a-z0-9_]*)+|hydra\.(?:sweeper|sweep|run)\.[a-z_]+)(?![\w/(])"
)
CHOICE = re.compile(r"(?<![\w./+-])(" + "|".join(GROUPS) + r"|search/space)=([a-z0-9_]+)\b")
FILE_TYPES = ("py", "log", "yaml", "csv", "json", "jsonl", "md", "db", "png")  # train.py
PATH = re.compile(r"(?<![\w/.<])((?:conf|src|bench|tests|docs)/[\w./-]*[\w/])")
MODULE = re.compile(r"(?<![\w/.])(lorahpo(?:\.[a-z_]+)+)")


def _code(path: Path) -> str:
    """Everything in inline code and code blocks of a doc."""
    return "\n".join(a or b for a, b in CODE.findall(path.read_text()))


@functools.cache
def _known_keys() -> set[str]:
    """Every key (and key prefix) of every option of every group, and the sweeper's and the
    OpenBox driver's own."""
    keys = set()
    for group in GROUPS:
        for option in sorted((CONF / group).glob("*.yaml")):
            for key in leaf_keys(compose_cfg(f"{group}={option.stem}")):
                parts = key.split(".")
                keys.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    hydra = OmegaConf.to_container(compose_cfg().hydra, resolve=False)
    keys.update(f"hydra.sweeper.{k}" for k in hydra["sweeper"])
    keys.update(f"hydra.{g}.{k}" for g in ("sweep", "run") for k in hydra[g])
    spec = importlib.util.spec_from_file_location("tune_openbox", ROOT / "tune_openbox.py")
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    keys.update(driver.OPENBOX_KEYS)
    return keys


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_config_key_the_docs_name_exists(doc):
    keys = {k for k in KEY.findall(_code(doc)) if k.rsplit(".", 1)[1] not in FILE_TYPES}
    missing = {k for k in keys if k not in _known_keys()}
    assert not missing, f"{doc.name} names config keys that do not exist: {sorted(missing)}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_config_option_the_docs_name_exists(doc):
    missing = []
    for group, option in CHOICE.findall(_code(doc)):
        if group == "experiment" and option in ("best", "ensemble"):  # in sweep directories
            continue
        if not (CONF / group / f"{option}.yaml").exists():
            missing.append(f"{group}={option}")
    assert not missing, f"{doc.name} names config options that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_file_and_module_the_docs_name_exists(doc):
    text = doc.read_text()
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    paths = [ROOT / p for p in PATH.findall(text)] + [doc.parent / p for p in links]
    missing = [str(p.relative_to(ROOT)) for p in paths if not p.resolve().exists()]
    missing += [m for m in MODULE.findall(text) if importlib.util.find_spec(m) is None]
    assert not missing, f"{doc.name} names files or modules that do not exist: {missing}"


@pytest.mark.parametrize("doc", ["README.md", "docs/sweeps.md"])
def test_searcher_tables_are_the_registrys_own(doc):
    text = (ROOT / doc).read_text()
    table = text.split("<!-- searchers table -->\n")[1].split("<!-- end searchers table -->")[0]
    assert table.strip() == searchers.markdown_table(), (
        f"{doc}: paste the output of `python -m lorahpo.sweep.searchers` between the markers"
    )
    for name in searchers.registry():  # and each searcher has its config
        assert (CONF / "search" / f"{name}.yaml").exists(), name


def test_the_layout_names_every_module():
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Layout")[1].split("```")[1]
    named = set(re.findall(r"[\w]+\.py|[\w]+/", layout))
    src = ROOT / "src" / "lorahpo"
    for path in sorted(src.glob("*.py")) + sorted((src / "sweep").glob("*.py")):
        if path.name != "__init__.py":
            assert path.name in named, f"README's layout does not name {path.relative_to(ROOT)}"
    for package in [p for p in src.rglob("*") if (p / "__init__.py").exists() and p != src]:
        assert f"{package.name}/" in named, f"README's layout does not name {package.name}/"
    for name in named:
        if name.endswith(".py"):
            found = list(ROOT.glob(f"*{name}")) + list(src.rglob(name))
            assert found, f"README's layout names {name}, which does not exist"


def test_the_readme_is_a_path_not_a_reference():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    contents = readme.split("**Contents:**")[1].split("\n\n")[0]
    for title in re.findall(r"^## (.+)$", readme, re.M):
        anchor = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        assert f"(#{anchor})" in contents, f"the table of contents lacks {title!r}"
