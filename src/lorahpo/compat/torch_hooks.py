"""torch modules' hook dictionaries (`_forward_hooks`, `_forward_pre_hooks`,
`_backward_hooks`): torch has no public way to count a module's hooks, and a kept base model
must come back from a trial with exactly the hooks it was loaded with."""

from __future__ import annotations

from typing import Any

from lorahpo.compat import attribute, broken, check_tested

PACKAGE = "torch"
TESTED = ">=2.4,<2.16"  # contract checked on 2.13 (CPU) and 2.15 (Python 3.13)
check_tested(PACKAGE, TESTED)
HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks")


def count_hooks(model: Any) -> int:
    """Forward, forward-pre and backward hooks registered on `model` and its submodules."""
    return sum(len(attribute(m, name, PACKAGE)) for m in model.modules() for name in HOOKS)


def contract() -> None:
    """Each kind of hook registered through torch's public API is counted, and removed."""
    import torch

    layer = torch.nn.Sequential(torch.nn.Linear(2, 2))
    handles = [
        layer[0].register_forward_hook(lambda *a: None),
        layer.register_forward_pre_hook(lambda *a: None),
        layer[0].register_full_backward_hook(lambda *a: None),
    ]
    if count_hooks(layer) != 3:
        raise broken(PACKAGE, f"{count_hooks(layer)} hooks counted of 3 registered")
    for h in handles:
        h.remove()
    if count_hooks(layer) != 0:
        raise broken(PACKAGE, "removed hooks are still counted")
