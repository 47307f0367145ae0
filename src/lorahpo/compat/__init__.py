"""Every use of another library's private internals, in one place.

Where no public API does the job, the project reaches into a library: an underscored
attribute, or a method that the library calls but does not document. Each such use lives in
one module here, named for the library, with:

- `TESTED`: the versions its internals were checked against; importing the module warns once
  when the installed version is outside them;
- `contract()`: a check, run by tests/test_compat.py, that the internals are still there and
  behave as used; it fails with a message naming the library and its version.

Nothing outside this package touches another library's private names.
"""

from __future__ import annotations

import warnings
from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.version import Version

_warned: set[str] = set()


class CompatError(RuntimeError):
    """A library's internals are not as this project uses them."""


def installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def check_tested(package: str, tested: str) -> None:
    """Warn once if `package`'s installed version is outside the `tested` range."""
    version = installed(package)
    if version is None or package in _warned or Version(version) in SpecifierSet(tested):
        return
    _warned.add(package)
    warnings.warn(
        f"lorahpo uses internals of {package} that were tested with {package}{tested}; "
        f"{package} {version} is installed. If a sweep misbehaves, run "
        "`pytest tests/test_compat.py`: it names any internal that changed.",
        stacklevel=3,
    )


def broken(package: str, what: str) -> CompatError:
    """The error for an internal of `package` that is not as expected."""
    return CompatError(
        f"{package} {installed(package) or '(not installed)'}: {what}. lorahpo.compat "
        f"needs updating for this version of {package}."
    )


def attribute(obj: object, name: str, package: str):
    """`obj.name`, or a CompatError naming the library and version."""
    try:
        return getattr(obj, name)
    except AttributeError:
        raise broken(package, f"{type(obj).__name__} has no attribute {name!r}") from None
