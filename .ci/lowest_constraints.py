"""Print a pip constraints file that pins every requirement to the lowest version pyproject.toml
allows: the runtime dependencies, every extra, and the ``test`` dependency group (with the
groups it includes). CI's oldest-versions pass installs with it (``pip install -c``), so the
declared lower bounds are the versions tested, and the file cannot drift from pyproject.toml.

A requirement without a lower bound (``>=``, ``==`` or ``~=``) is an error: its oldest version
is not something one can install, let alone test.

Usage: ``python .ci/lowest_constraints.py [pyproject.toml] > constraints.txt``
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: The dependency groups whose requirements the oldest-versions pass installs.
GROUPS = ("test",)


def _group(groups: Mapping[str, list[Any]], name: str) -> list[str]:
    found: list[str] = []
    for item in groups[name]:
        if isinstance(item, dict):
            found += _group(groups, item["include-group"])
        else:
            found.append(item)
    return found


def requirements(pyproject: Mapping[str, Any], groups: Iterable[str] = GROUPS) -> list[str]:
    """Every requirement the oldest-versions pass installs, as written in pyproject.toml."""
    project = pyproject["project"]
    found = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        found += extra
    for name in groups:
        found += _group(pyproject.get("dependency-groups", {}), name)
    return found


def lower_bound(requirement: Requirement) -> Version:
    """The lowest version ``requirement`` allows (ValueError when it names none)."""
    bounds = [
        Version(spec.version)
        for spec in requirement.specifier
        if spec.operator in (">=", "==", "~=") and "*" not in spec.version
    ]
    if not bounds:
        raise ValueError(f"{requirement} has no lower bound (>=, == or ~=)")
    return max(bounds)


def constraints(pyproject: Mapping[str, Any], groups: Iterable[str] = GROUPS) -> list[str]:
    """``name==version[; marker]`` lines, one per distinct (name, marker), sorted: the highest
    lower bound where several requirements name the same distribution."""
    pins: dict[tuple[str, str], Version] = {}
    for text in requirements(pyproject, groups):
        requirement = Requirement(text)
        key = (requirement.name.lower().replace("_", "-"), str(requirement.marker or ""))
        bound = lower_bound(requirement)
        pins[key] = max(bound, pins.get(key, bound))
    return [
        f"{name}=={version}" + (f"; {marker}" if marker else "")
        for (name, marker), version in sorted(pins.items())
    ]


def main(argv: list[str]) -> int:
    path = (
        Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[1] / "pyproject.toml"
    )
    pyproject = tomllib.loads(path.read_text(encoding="utf-8"))
    try:
        lines = constraints(pyproject)
    except ValueError as exc:
        sys.stderr.write(f"lowest_constraints: {exc}\n")
        return 1
    header = f"# The lowest versions {path.name} allows (made by .ci/lowest_constraints.py)."
    sys.stdout.write("\n".join([header, *lines]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
