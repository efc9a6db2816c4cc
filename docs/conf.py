"""Sphinx configuration for the kie-async documentation.

Built with warnings as errors by ``nox -s docs`` (HTML, then the doctest builder).
"""

from __future__ import annotations

import doctest
import importlib
import sys
from pathlib import Path
from typing import Any

from sphinx.util import logging

# Build from a checkout even when the package is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import kie_async

logger = logging.getLogger(__name__)

project = "kie-async"
author = "kie-async developers"
copyright = "2026, kie-async developers"
release = kie_async.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
]
# No intersphinx: the docs build without network access.

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- autodoc and napoleon (the package's docstrings are Google style) -------------------------
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# -- doctest -------------------------------------------------------------------------------
# Examples run against kie_async.testing.FakeKieServer on loopback: no key, no network.
doctest_test_doctest_blocks = ""
# Sphinx's default flags, plus NORMALIZE_WHITESPACE: a long expected output may be wrapped to
# fit the page width.
doctest_default_flags = (
    doctest.ELLIPSIS
    | doctest.IGNORE_EXCEPTION_DETAIL
    | doctest.DONT_ACCEPT_TRUE_FOR_1
    | doctest.NORMALIZE_WHITESPACE
)

# -- HTML ----------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"kie-async {release}"
html_static_path: list[str] = []


def _public_alias(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve references to private module paths (``kie_async._protocol.records.TaskRecord``, or
    ``kie_async.testing._scripts.TaskScript``, as type hints name them) to the public name
    (``kie_async.TaskRecord``, ``kie_async.testing.TaskScript``) the reference documents."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("kie_async."):
        return None
    parts = target.split(".")
    # The private modules are dropped: every public name is re-exported by a public package.
    public = ".".join(part for part in parts[:-1] if not part.startswith("_")) + "." + parts[-1]
    if public == target:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], public, node, contnode
    )


#: The public modules whose every ``__all__`` name the API reference must document.
PUBLIC_MODULES = ("kie_async", "kie_async.testing", "kie_async.callbacks")


def _check_public_names(app: Any, env: Any) -> None:
    """Warn (an error under ``-W``) when a public name is missing from the API reference."""
    documented = env.get_domain("py").objects
    for module_name in PUBLIC_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in getattr(module, "__all__", ()):
            if f"{module_name}.{name}" not in documented:
                logger.warning(
                    "%s.%s is public but not in the API reference (docs/api/)", module_name, name
                )


def setup(app: Any) -> None:
    """Register the reference resolver and the check that every public name is documented."""
    app.connect("missing-reference", _public_alias)
    app.connect("env-check-consistency", _check_public_names)
