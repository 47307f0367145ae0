"""The search space: Hydra's sweep grammar in, search-algorithm domains out.

`search.space` maps config keys to Hydra sweep expressions (`choice(8,16)`, `range(1,4)`,
`interval(0,0.3)`, `tag(log, interval(5e-5,5e-4))`). The command line edits it with the same
grammar: a sweep override replaces or adds a key, a plain override pins a key for every trial.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from lorahpo.errors import UserError


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: a list of values, or a numeric interval."""

    key: str
    values: tuple[Any, ...] | None = None  # choice / range
    low: float | None = None  # interval
    high: float | None = None
    log: bool = False
    integer: bool = False

    @property
    def is_choice(self) -> bool:
        return self.values is not None

    def upper(self) -> Any:
        """The largest value this parameter can take (for budgets such as epochs)."""
        return max(self.values) if self.is_choice else self.high


def parse_param(key: str, expr: str) -> Param:
    """One `key=<sweep expression>` as a `Param`; a clear error names the key otherwise."""
    try:
        override = OverridesParser.create().parse_override(f"{key}={expr}")
    except Exception as e:  # Hydra's grammar errors are long; keep the first line
        raise UserError(
            f"search space entry {key}={expr!r} is not valid Hydra sweep grammar "
            f"({str(e).strip().splitlines()[0]}). Use choice(a,b), range(a,b), "
            "interval(a,b) or tag(log, interval(a,b))."
        ) from None
    return _param(override)


def _param(override: Override) -> Param:
    key, value = override.get_key_element(), override.value()
    if isinstance(value, ChoiceSweep):
        return Param(key, values=tuple(value.list))
    if isinstance(value, RangeSweep):
        step = value.step or 1
        values, x = [], value.start
        while (x < value.stop) if step > 0 else (x > value.stop):
            values.append(x)
            x += step
        return Param(key, values=tuple(values))
    if isinstance(value, IntervalSweep):
        if value.start >= value.end:
            raise UserError(
                f"search space entry {override.input_line!r}: the interval's start "
                "must be below its end."
            )
        log = "log" in value.tags
        if log and value.start <= 0:
            raise UserError(
                f"search space entry {override.input_line!r}: a log interval needs a start above 0."
            )
        integer = "int" in value.tags
        return Param(key, low=value.start, high=value.end, log=log, integer=integer)
    raise UserError(
        f"search space entry {override.input_line!r} is a single value, not a "
        "range to search: pin it as a plain override instead."
    )


def build_space(
    space_cfg: Mapping[str, str], cli_overrides: list[str]
) -> tuple[dict[str, Param], list[str]]:
    """The space after command-line edits, and the plain overrides every trial gets."""
    space = {key: parse_param(key, str(expr)) for key, expr in (space_cfg or {}).items()}
    fixed: list[str] = []
    parser = OverridesParser.create()
    for override in parser.parse_overrides(cli_overrides):
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = _param(override)
        else:
            space.pop(key, None)  # pinned on the command line: not searched
            fixed.append(override.input_line)
    if not space:
        raise UserError(
            "the search space is empty: set search.space in the search config or "
            "add sweep overrides such as 'lora.r=choice(8,16)'."
        )
    return space, fixed


def override_value(value: Any) -> str:
    """A sampled value as Hydra override text (strings quoted when they need it)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        needs_quotes = not value.replace("_", "").replace("-", "").replace(".", "").isalnum()
        return repr(value) if needs_quotes else value
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    return repr(value)


def trial_overrides(params: Mapping[str, Any]) -> list[str]:
    return [f"{key}={override_value(value)}" for key, value in params.items()]
