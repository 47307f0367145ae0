"""The shape of the library: no import cycles, no function longer than a screen, and every
number a class is built with says what it counts."""

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
SRC = Path(__file__).resolve().parents[1] / "src"
MAX_LINES = 60


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The lorahpo modules a module imports, at any depth of its code."""
    name, out = _module_name(path), set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if _is_module(sub) else base)
    return {m for m in out if m.split(".")[0] == "lorahpo" and m != name}


def _is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def test_no_import_cycles():
    graph = {_module_name(p): _imports(p) for p in (SRC / "lorahpo").rglob("*.py")}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                cycle = path[path.index(dep) :] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, [*path, dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_no_function_longer_than_a_screen():
    long = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({lines})")
    assert not long, long


def _is_dataclass(cls: ast.ClassDef) -> bool:
    return any(
        (d.func if isinstance(d, ast.Call) else d).id == "dataclass"
        for d in cls.decorator_list
        if isinstance(d.func if isinstance(d, ast.Call) else d, ast.Name)
    )


def _numbers(cls: ast.ClassDef) -> list[tuple[str, int]]:
    """(name, line) of each int or float a class is constructed with: its dataclass fields,
    its __init__'s parameters."""
    annotated = []
    if _is_dataclass(cls):
        annotated += [
            (n.target.id, n.lineno, n.annotation)
            for n in cls.body
            if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
        ]
    init = next(
        (n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None
    )
    if init:
        args = init.args.args[1:] + init.args.kwonlyargs
        annotated += [(a.arg, a.lineno, a.annotation) for a in args if a.annotation]
    number = re.compile(r"\b(int|float)\b")
    return [(name, line) for name, line, ann in annotated if number.search(ast.unparse(ann))]


def test_every_number_a_class_is_built_with_is_documented():
    """A step, an epoch, a second or a share: the reader of a field or parameter holding a
    number is told which, in a comment on its line (or the line above) or in the class's or
    its __init__'s docstring (`name` or `name:`)."""
    silent = []
    for path in sorted(SRC.rglob("*.py")):
        lines = path.read_text().splitlines()
        for cls in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(cls, ast.ClassDef):
                continue
            init = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
            doc = (ast.get_docstring(cls) or "") + "".join(ast.get_docstring(n) or "" for n in init)
            for name, line in _numbers(cls):
                commented = "#" in lines[line - 1] or lines[line - 2].strip().startswith("#")
                if not (commented or re.search(rf"`{name}`|\b{name}:", doc)):
                    silent.append(f"{path.relative_to(SRC)}:{line} {cls.name}.{name}")
    assert not silent, silent
