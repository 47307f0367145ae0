"""The search space: Hydra's sweep grammar in, search-algorithm domains out.

`search.space` maps config keys to Hydra sweep expressions (`choice(8,16)`, `range(1,4)`,
`interval(0,0.3)`, `tag(log, interval(5e-5,5e-4))`). The command line edits it with the same
grammar: a sweep override replaces or adds a key, a plain override pins a key for every trial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from omegaconf import DictConfig, OmegaConf

from lorahpo.errors import UserError, first_line


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: a list of values, or a numeric interval."""

    key: str  # the config key it overrides (lora.r, train.lr, ...)
    values: tuple[Any, ...] | None = None  # choice / range
    low: float | None = None  # interval: its lower bound, in the key's own unit
    high: float | None = None  # interval: its upper bound
    log: bool = False  # sampled uniformly in log space
    integer: bool = False  # rounded to whole numbers

    @property
    def is_choice(self) -> bool:
        return self.values is not None

    def upper(self) -> Any:
        """The largest value this parameter can take (for budgets such as epochs)."""
        return max(self.values) if self.is_choice else self.high

    def member(self, value: Any) -> Any:
        """`value` as this parameter's own value (the choice element itself), or None if
        the space does not hold it."""
        if self.is_choice:
            return next((v for v in self.values if v == value and type(v) is type(value)), None)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if not self.low <= value <= self.high or (self.integer and value != int(value)):
            return None
        return int(value) if self.integer else float(value)


def parse_param(key: str, expr: str) -> Param:
    """One `key=<sweep expression>` as a `Param`; a clear error names the key otherwise."""
    try:
        override = OverridesParser.create().parse_override(f"{key}={expr}")
    except Exception as e:  # Hydra's grammar errors are long; keep the first line
        raise UserError(
            f"search space entry {key}={expr!r} is not valid Hydra sweep grammar "
            f"({first_line(e)}). Use choice(a,b), range(a,b), "
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


def plain(value: Any) -> Any:
    """A Python value for a numpy scalar (what searchers hand out); anything else as it is."""
    return value.item() if hasattr(value, "item") else value


def plain_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {key: plain(value) for key, value in params.items()}


def start_points(
    entries: Sequence[Any], space: dict[str, Param], defaults: DictConfig
) -> tuple[list[dict[str, Any]], list[str]]:
    """Full parameter sets to evaluate first, and a note for each entry left out.

    An entry is `default` (the values the trial config has without the search: what
    `python train.py` with the same pinned overrides runs) or a mapping of overrides on top
    of those values, e.g. a published best configuration.
    """
    points, notes = [], []
    for i, entry in enumerate(entries or []):
        overrides = {} if entry == "default" else dict(entry)
        point, outside = {}, []
        for key, p in space.items():
            value = overrides.get(key, OmegaConf.select(defaults, key))
            point[key] = p.member(value)
            if point[key] is None:
                outside.append(f"{key}={value}")
        if outside:
            notes.append(
                f"search.start_points[{i}] left out: {', '.join(outside)} outside the search space"
            )
        elif point not in points:
            points.append(point)
    return points, notes


def override_value(value: Any) -> str:
    """A sampled value as Hydra override text (strings quoted when they need it)."""
    value = plain(value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        needs_quotes = not value.replace("_", "").replace("-", "").replace(".", "").isalnum()
        return repr(value) if needs_quotes else value
    return repr(value)


def trial_overrides(params: Mapping[str, Any]) -> list[str]:
    return [f"{key}={override_value(value)}" for key, value in params.items()]
