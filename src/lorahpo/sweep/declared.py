"""The registries' one way to find what their modules declare (searchers, schedulers): a
package with one module per entry, each holding one declaration under a fixed name."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import Any


def declared(package: str, path: Iterable[str], attr: str, kind: type) -> dict[str, Any]:
    """Every `attr` of type `kind` in the modules of `package` (at `path`; modules starting
    with `_` are helpers), by its `name`, sorted."""
    found = {}
    for info in pkgutil.iter_modules(path):
        if info.name.startswith("_"):
            continue
        spec = getattr(importlib.import_module(f"{package}.{info.name}"), attr, None)
        if isinstance(spec, kind):
            found[spec.name] = spec
    return dict(sorted(found.items()))
