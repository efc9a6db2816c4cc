"""The project's own promises: the README's commands are the ones CI runs, the core stays lean."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

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


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_developer_tools_are_dependency_groups_not_extras() -> None:
    """Users see only the cli and redis extras; test, typecheck, lint, docs and bench are PEP 735
    dependency groups."""
    pyproject = _pyproject()
    assert set(pyproject["project"]["optional-dependencies"]) <= {"cli", "redis"}
    assert {"test", "typecheck", "lint", "docs", "bench"} <= set(pyproject["dependency-groups"])


def test_project_urls_name_source_issues_changelog_and_docs() -> None:
    """PyPI's sidebar links to the source, the issues, the changelog and the documentation."""
    urls = _pyproject()["project"]["urls"]
    assert {"Source", "Issues", "Changelog", "Documentation"} <= set(urls)


def test_sdist_manifest_ships_what_the_tests_need() -> None:
    """MANIFEST.in puts the tests (all of tests/), the docs, the noxfile and CI's scripts in the
    sdist (.ci/sdist-tests runs the suite from one), and the wheel still holds only kie_async."""
    manifest = (ROOT / "MANIFEST.in").read_text(encoding="utf-8").splitlines()
    for line in ("graft tests", "graft docs", "include noxfile.py", "graft .ci"):
        assert line in manifest, line
    assert _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"] == ["kie_async*"]


_NOX_PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("noxfile", "noxfile.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
import nox
print(json.dumps({
    "error_on_missing": nox.options.error_on_missing_interpreters,
    "pythons": module.PYTHONS,
    "newest": module.NEWEST,
    "oldest": module.OLDEST,
}))
"""


@pytest.mark.parametrize(("ci", "errors"), [("true", True), ("1", True), (None, False)])
def test_nox_fails_missing_interpreters_under_ci_only(ci: str | None, errors: bool) -> None:
    """Under CI a nox session without its interpreter fails the run instead of being skipped,
    and the one-interpreter sessions pick a Python that is installed (this one, at least)."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    probe = subprocess.run(
        [sys.executable, "-c", _NOX_PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    facts = json.loads(probe.stdout)
    assert facts["error_on_missing"] is errors
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert here in facts["pythons"]
    assert facts["newest"] in facts["pythons"] and facts["oldest"] in facts["pythons"]
    # The running Python is installed, so neither may be newer/older than it and missing.
    versions = [tuple(map(int, v.split("."))) for v in (facts["oldest"], here, facts["newest"])]
    assert versions == sorted(versions)


def test_readme_python_examples_are_the_ones_mypy_checks() -> None:
    """Every python block of the README appears unchanged (indented as a function body) in
    tests/typing/readme_examples.py, which mypy --strict checks."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", readme, flags=re.S | re.M)
    checked = (ROOT / "tests" / "typing" / "readme_examples.py").read_text(encoding="utf-8")
    assert len(blocks) >= 2
    for block in blocks:
        assert textwrap.indent(block, "    ") in checked, block
