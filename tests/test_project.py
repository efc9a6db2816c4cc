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
    """Users see only the cli, redis and starlette extras; test, typecheck, lint, docs and bench
    are PEP 735 dependency groups."""
    pyproject = _pyproject()
    assert set(pyproject["project"]["optional-dependencies"]) <= {"cli", "redis", "starlette"}
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


def _public_callables() -> list[tuple[str, Any]]:
    import kie_async
    import kie_async.callbacks
    import kie_async.testing

    found: list[tuple[str, Any]] = []
    for module in (kie_async, kie_async.testing, kie_async.callbacks):
        for name in module.__all__:
            thing = getattr(module, name)
            if callable(thing):
                found.append((f"{module.__name__}.{name}", thing))
            if isinstance(thing, type):
                for attr, member in vars(thing).items():
                    if callable(member) and not attr.startswith("_"):
                        found.append((f"{module.__name__}.{name}.{attr}", member))
    return found


def test_signatures_show_real_defaults() -> None:
    """No public signature shows a placeholder such as ``rate_limit=<default>`` or an object
    address; KieClient's rate limit default reads as the limit it is."""
    import inspect

    from kie_async import KieClient, RateLimit

    for name, thing in _public_callables():
        try:
            signature = inspect.signature(thing)
        except (TypeError, ValueError):
            continue
        for parameter in signature.parameters.values():
            shown = repr(parameter.default)
            assert "<default>" not in shown and " at 0x" not in shown, (name, parameter)
    default = inspect.signature(KieClient).parameters["rate_limit"].default
    assert eval(repr(default), {"RateLimit": RateLimit}) == RateLimit()


def test_kie_client_signature_shows_each_parameters_own_default() -> None:
    """Every KieClient parameter's default reads as the value it stands for: ``timeout`` as
    ``Timeout()`` and ``connect_timeout`` as its seconds, never another argument's default."""
    import inspect

    from kie_async import KieClient, RateLimit, Timeout

    expected = {
        "api_key": None,
        "base_url": None,
        "session": None,
        "poll": None,
        "retry": None,
        "max_retries": None,
        "rate_limit": RateLimit(),
        "timeout": Timeout(),
        "connect_timeout": Timeout().connect,
        "allow_insecure_http": False,
        "user_agent": None,
        "callback_url": None,
        "callbacks": None,
        "safety_poll": None,
        "download": None,
    }
    names = {"RateLimit": RateLimit, "Timeout": Timeout}
    for name, parameter in inspect.signature(KieClient).parameters.items():
        shown = eval(repr(parameter.default), names)
        if name in expected:
            assert shown == expected[name], (name, parameter)
        assert type(shown) is not RateLimit or name == "rate_limit", (name, parameter)


def test_every_environment_variable_is_documented() -> None:
    """Each KIE_* variable the package reads (and the shared rate limit's) has its section on
    docs/environment.md."""
    package = ROOT / "kie_async"
    used = set()
    for path in package.rglob("*.py"):
        used.update(re.findall(r"\bKIE_[A-Z_]+\b", path.read_text(encoding="utf-8")))
    used |= {"KIE_API_KEY", "KIE_BASE_URL", "KIE_LOG", "KIE_RATE_LIMIT_REDIS"}
    page = (ROOT / "docs" / "environment.md").read_text(encoding="utf-8")
    for name in sorted(used):
        assert f"## `{name}`" in page, name


def test_api_reference_is_split_by_topic() -> None:
    """docs/api.md is an index of topic pages; every public name is documented on exactly one of
    them (the docs build checks the same with Sphinx's own inventory)."""
    import kie_async
    import kie_async.callbacks
    import kie_async.testing

    index = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert "autoclass" not in index and "autoexception" not in index
    pages = {p.stem: p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "api").glob("*.md")}
    assert len(pages) >= 5
    for page in pages:
        assert f"api/{page}" in index, page
    directive = re.compile(r"^\.\. auto(?:class|exception|function|data):: (\S+?)(?:\(\))?$", re.M)
    documented = [
        name.rsplit(".", 1)[-1] for text in pages.values() for name in directive.findall(text)
    ]
    for module in (kie_async, kie_async.testing, kie_async.callbacks):
        for name in module.__all__:
            if name == "__version__":
                continue
            assert documented.count(name) == 1, (module.__name__, name)


def _code_blocks(text: str) -> list[tuple[str, list[str]]]:
    blocks = re.finditer(r"^(```+)(\S*)[^\n]*\n(.*?)^\1\s*$", text, flags=re.S | re.M)
    return [(b.group(2), b.group(3).splitlines()) for b in blocks]


#: Characters of a code line that furo shows without a scroll bar at its full content width
#: (46em of text; code at 81.25 % in a monospace font, 0.875rem padding each side: about 90).
CODE_WIDTH = 90


def test_code_blocks_fit_the_page_width() -> None:
    """Every code block line in the docs (and the README's Python examples, which the docs
    repeat) is at most CODE_WIDTH characters, so no example needs a horizontal scroll bar.
    The README's shell commands stay one line each: CI runs them verbatim."""
    too_wide = []
    for path in sorted([*ROOT.glob("docs/*.md"), *ROOT.glob("docs/api/*.md"), ROOT / "README.md"]):
        if path.name == "changelog.md":  # the lead's page
            continue
        for lang, lines in _code_blocks(path.read_text(encoding="utf-8")):
            if lang in ("{eval-rst}", "{toctree}") or (
                path.name == "README.md" and lang != "python"
            ):
                continue
            too_wide += [f"{path.name}: {line}" for line in lines if len(line) > CODE_WIDTH]
    assert not too_wide, "\n".join(too_wide)


def _lowest_constraints() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "lowest_constraints", ROOT / ".ci" / "lowest_constraints.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_oldest_versions_pass_pins_every_lower_bound() -> None:
    """The constraints of CI's oldest-versions pass pin every requirement of the runtime, the
    extras and the test group to the lower bound pyproject.toml declares, and a requirement
    without a lower bound is refused."""
    from packaging.requirements import Requirement

    generator = _lowest_constraints()
    pyproject = _pyproject()
    lines = generator.constraints(pyproject)
    pins = {}
    for line in lines:
        pin = Requirement(line)
        pins[pin.name] = pin
    declared = [
        *pyproject["project"]["dependencies"],
        *(r for extra in pyproject["project"]["optional-dependencies"].values() for r in extra),
        *(r for r in pyproject["dependency-groups"]["test"] if isinstance(r, str)),
    ]
    for text in declared:
        requirement = Requirement(text)
        lowest = min(
            spec.version for spec in requirement.specifier if spec.operator in (">=", "==")
        )
        pin = pins[requirement.name]
        assert str(pin.specifier) == f"=={lowest}", (text, str(pin))
        assert pin.marker == requirement.marker, text
    assert len(pins) == len(lines)
    with pytest.raises(ValueError, match="no lower bound"):
        generator.constraints({"project": {"dependencies": ["aiohttp<4"]}}, groups=())
    listed = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "lowest_constraints.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert listed[1:] == lines


def test_ci_and_nox_run_the_oldest_versions_pass() -> None:
    """After the README's test command (the newest releases), .ci/run runs the suite again on
    the oldest supported Python with the oldest allowed versions; nox's default run does too."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = next(c for c in _readme_commands() if "pytest" in c)
    after = ci[ci.index(test_command) + len(test_command) :]
    assert 'check "oldest versions" bash .ci/oldest-tests "$oldest_python"' in after
    assert "python_versions(" in after  # the oldest Python comes from the classifiers
    assert 'failed+=("oldest versions (no Python' in after  # never skipped silently
    script = (ROOT / ".ci" / "oldest-tests").read_text(encoding="utf-8")
    assert ".ci/lowest_constraints.py" in script and "-m pytest" in script
    noxfile = (ROOT / "noxfile.py").read_text(encoding="utf-8")
    assert re.search(r'nox\.options\.sessions = \[.*"oldest".*\]', noxfile)
    assert "@nox.session(python=PYTHONS[0])\ndef oldest(" in noxfile


def test_supported_pythons_agree_everywhere() -> None:
    """requires-python, the classifiers (which nox and CI read), the README and the quickstart
    name the same oldest and newest supported Python."""
    project = _pyproject()["project"]
    prefix = "Programming Language :: Python :: "
    versions = [
        c[len(prefix) :] for c in project["classifiers"] if re.match(prefix + r"3\.\d+$", c)
    ]
    oldest, newest = versions[0], versions[-1]
    assert versions == sorted(versions, key=lambda v: tuple(map(int, v.split("."))))
    assert project["requires-python"] == f">={oldest}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quickstart = (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
    for text in (readme, quickstart):
        assert f"Python {oldest} or later" in " ".join(text.split())
        assert f"tested on {oldest} to {newest}" in " ".join(text.split())
    assert f"installed Python from {oldest} to {newest}" in " ".join(readme.split())


def test_the_version_is_the_changelogs_newest_release() -> None:
    """kie_async.__version__ is the newest dated release of the changelog, and the wheel the
    install instructions name is that version's."""
    from datetime import date

    from kie_async import __version__

    changelog = (ROOT / "docs" / "changelog.md").read_text(encoding="utf-8")
    release = re.search(r"^## (\d+\.\d+\.\d+) \((\d{4}-\d\d-\d\d)\)$", changelog, re.M)
    assert release is not None, "no dated release heading such as '## 0.2.0 (2026-12-07)'"
    assert release.group(1) == __version__
    date.fromisoformat(release.group(2))
    wheel = f"kie_async-{__version__}-py3-none-any.whl"
    for path in (ROOT / "README.md", ROOT / "docs" / "quickstart.md"):
        text = path.read_text(encoding="utf-8")
        assert wheel in text, path.name
        assert not re.search(r"^\$? *pip install kie-async", text, re.M), path.name
