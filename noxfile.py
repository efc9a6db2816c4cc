"""Developer sessions. Run ``nox`` for all of them, or ``nox -s tests-3.12`` for one.

Facts (Python versions, dependency groups) come from pyproject.toml, so there is one place to
change them. ``tests`` runs on every supported Python with the newest releases, ``oldest`` on
the oldest supported Python with the oldest versions pyproject.toml allows; the other sessions
need one interpreter and take the first supported one that is installed, so ``nox`` on a
machine with only some Pythons still runs them all. Under ``CI`` (set to anything but
``0``/``false``), a session whose interpreter is missing fails the run instead of being
skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import nox

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS: list[str] = nox.project.python_versions(PYPROJECT)


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no", "off"}


def _runs(version: str) -> bool:
    """Whether ``python<version>`` on PATH starts (a pyenv shim for a version that is not
    selected is on PATH but fails)."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return True
    found = shutil.which(f"python{version}")
    if found is None:
        return False
    try:
        probe = subprocess.run([found, "-c", ""], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def _one_python(preferred: list[str]) -> str:
    """The first of ``preferred`` that is installed; the first one when none is (nox then
    reports it missing: an error under CI)."""
    return next((version for version in preferred if _runs(version)), preferred[0])


#: Lint and docs run on the newest installed Python, the type check on the oldest (mypy checks
#: 3.10 semantics either way: ``python_version`` in pyproject.toml).
NEWEST = _one_python(PYTHONS[::-1])
OLDEST = _one_python(PYTHONS)

nox.options.sessions = ["lint", "typecheck", "tests", "oldest", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = _on_ci()
nox.options.default_venv_backend = "venv"


def _install(session: nox.Session, *groups: str, editable: bool = True) -> None:
    """The package (editable) and the given PEP 735 dependency groups from pyproject.toml."""
    if editable:
        session.install("-e", ".")
    session.install(*nox.project.dependency_groups(PYPROJECT, *groups))


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite, warnings as errors, on every supported Python that is installed."""
    _install(session, "test")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHONS[0])
def oldest(session: nox.Session) -> None:
    """Run the test suite on the oldest supported Python with the oldest version of every
    dependency pyproject.toml allows (.ci/oldest-tests, as CI does; its constraints come from
    pyproject.toml's lower bounds through .ci/lowest_constraints.py, run by nox's own Python)."""
    python = shutil.which("python", path=session.bin)
    session.run("bash", ".ci/oldest-tests", str(python), sys.executable, external=True)


@nox.session(python=NEWEST)
def lint(session: nox.Session) -> None:
    """Check style and common bugs with ruff (lint and format)."""
    _install(session, "lint", editable=False)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=OLDEST)
def typecheck(session: nox.Session) -> None:
    """Type-check the package and tests/typing with mypy --strict."""
    _install(session, "typecheck")
    session.run("mypy", "--strict")


@nox.session(python=NEWEST)
def docs(session: nox.Session) -> None:
    """Build the documentation with Sphinx, warnings as errors, and run its doctests."""
    _install(session, "docs")
    shutil.rmtree("docs/_build", ignore_errors=True)
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
    session.run("sphinx-build", "-W", "-b", "doctest", "docs", "docs/_build/doctest")


@nox.session(python=NEWEST)
def sdist(session: nox.Session) -> None:
    """Build the sdist, unpack it, and run the test suite inside it (not in the default run;
    .ci/run does the same)."""
    session.install(".")  # the dependencies; the tests import kie_async from the sdist itself
    _install(session, "test", "packaging", editable=False)
    python = shutil.which("python", path=session.bin)
    session.run("bash", ".ci/sdist-tests", str(python), external=True)


@nox.session(python=NEWEST)
def bench(session: nox.Session) -> None:
    """Run the bulk benchmark against a fake server in a separate process (not part of CI)."""
    _install(session, "bench")
    session.run("python", "benchmarks/bench_bulk.py", *session.posargs)
