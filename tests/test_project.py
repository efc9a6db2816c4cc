"""The project's own promises: the README's commands are the ones CI runs, the core stays lean."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.startswith("python3 -m venv")]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    """.ci/run's command is byte for byte the README's 'run the tests' command."""
    commands = _readme_commands()
    test_command = next(c for c in commands if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_command in ci.splitlines()


def test_readme_demo_command_runs_the_demo_without_a_key() -> None:
    """The README's 'run it' command installs the cli extra and runs the demo."""
    demo = next(c for c in _readme_commands() if "demo" in c)
    assert re.search(r"pip install .*-e '\.\[cli\]'", demo)
    assert demo.endswith("kie-async demo")


def test_runtime_dependencies_are_the_four_agreed_ones() -> None:
    """Only aiohttp, attrs, cattrs and backoff are installed at run time; the rest are extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {re.split(r"[<>=!~ \[]", dep, maxsplit=1)[0] for dep in project["dependencies"]}
    assert names == {"aiohttp", "attrs", "cattrs", "backoff"}


def test_ci_runs_every_check_after_the_tests() -> None:
    """.ci/run runs ruff (lint and format), mypy --strict and both Sphinx builds after the tests,
    and treats pytest's exit status 5 (no tests) as a failure."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = next(c for c in _readme_commands() if "pytest" in c)
    after = ci[ci.index(test_command) + len(test_command) :]
    for check in (
        "ruff check .",
        "ruff format --check .",
        "mypy --strict",
        "sphinx-build -W --keep-going -q -b html docs",
        "sphinx-build -W -q -b doctest docs",
    ):
        assert check in after, check
    assert '"$status" -eq 5' in after
    assert "exit 1" in after
