"""Public names show where a user imports them: ``kie_async.TaskNotFoundError`` in tracebacks,
reprs, pickles and docs, not ``kie_async._errors.TaskNotFoundError``.

:func:`publish` sets an object's ``__module__``, as httpx and trio do for their exports. Alone,
that would break :func:`typing.get_type_hints` (and cattrs, which reads hints through it) on
every class of a module written with ``from __future__ import annotations``: the hints are
strings, evaluated in ``sys.modules[cls.__module__]``, which does not hold the names they use
(hynek/svcs#52). So a class's own annotations are evaluated first, in its defining module.
"""

from __future__ import annotations

import inspect
import sys
import typing

__all__ = ["publish"]


def publish(obj: object, package: str) -> None:
    """Show ``obj`` (a class or function) as defined in ``package``, keeping its type hints
    readable. Anything else, and an object already published, is left alone."""
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return
    home = sys.modules.get(obj.__module__)
    if home is None or obj.__module__ == package:
        return
    if inspect.isclass(obj):
        _resolve_own_annotations(obj, vars(home))
    obj.__module__ = package


def _resolve_own_annotations(cls: type, namespace: dict[str, typing.Any]) -> None:
    """Replace the string annotations of ``cls`` itself by what they name in ``namespace`` (its
    module's). A class naming something imported only for type checkers keeps its strings
    (``tests/test_exports.py`` reads every public class's hints, so none does today)."""
    own = inspect.get_annotations(cls)
    if not any(isinstance(hint, str) for hint in own.values()):
        return
    try:
        hints = typing.get_type_hints(cls, globalns=namespace, include_extras=True)
    except Exception:  # a name imported for type checkers only: leave the strings
        return
    cls.__annotations__ = {name: hints.get(name, hint) for name, hint in own.items()}
