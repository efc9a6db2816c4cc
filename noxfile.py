"""Developer sessions. Run ``nox`` for all of them, or ``nox -s tests-3.12`` for one.

Facts (Python versions, extras) come from pyproject.toml, so there is one place to change them.
"""

from __future__ import annotations

import shutil

import nox

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)

nox.options.sessions = ["lint", "typecheck", "tests", "docs"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite, warnings as errors, on every supported Python that is installed."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHONS[-1])
def lint(session: nox.Session) -> None:
    """Check style and common bugs with ruff (lint and format)."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHONS[0])
def typecheck(session: nox.Session) -> None:
    """Type-check the package and tests/typing with mypy --strict, on the oldest Python."""
    session.install("-e", ".[typecheck]")
    session.run("mypy", "--strict")


@nox.session(python=PYTHONS[-1])
def docs(session: nox.Session) -> None:
    """Build the documentation with Sphinx, warnings as errors, and run its doctests."""
    session.install("-e", ".[docs]")
    shutil.rmtree("docs/_build", ignore_errors=True)
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
    session.run("sphinx-build", "-W", "-b", "doctest", "docs", "docs/_build/doctest")


@nox.session(python=PYTHONS[-1])
def bench(session: nox.Session) -> None:
    """Run the bulk benchmark against a fake server in a separate process (not part of CI)."""
    session.install("-e", ".[bench]")
    session.run("python", "benchmarks/bench_bulk.py", *session.posargs)
