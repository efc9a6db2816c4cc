"""The one cattrs converter: kie's camelCase on the wire, and every quirk of its payloads.

Request bodies are built by the request kinds themselves (``_kinds``, from the same
``metadata["wire"]`` names: a flat dict needs no converter, and the requests layer stays free of
it); this module reads what kie.ai answers.

Wire names come from each attrs field's ``metadata["wire"]`` (camelCase of the field name when
absent), applied by hook factories, so models never carry aliases. Leniency lives in type hooks:

* nullable strings: ``None``, ``""`` and the string ``"null"`` all mean "no value";
* ``resultInfoJson``: an object ``{"resultUrls": [...]}``, or that object as a JSON string, whose
  items are ``{"resultUrl": ...}`` objects or plain strings; only absolute ``https://`` URLs
  (``http://`` on loopback, for tests) are result URLs, anything else is logged and left in
  the raw data;
* ``paramJson``: an object or a JSON string; anything unreadable becomes ``None``;
* ``successFlag``: an int or a numeric string.

Nothing here raises anything but :class:`UnexpectedResponseError` to callers.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from .._errors import UnexpectedResponseError
from .._text import printable
from .records import TaskRecord

T = TypeVar("T")

log = logging.getLogger("kie_async")


_NULLISH = frozenset({"", "null", "none", "undefined", "nil"})


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def wire_name(field: attrs.Attribute[Any]) -> str | None:
    """The key a field has on the wire, or ``None`` if it is never sent."""
    if "wire" in field.metadata:
        name: str | None = field.metadata["wire"]
        return name
    return _camel(field.name)


def nullable_str(value: object, _: object = None) -> str | None:
    """kie's empty values (``None``, ``""``, ``"null"``) as ``None``; numbers as text."""
    if type(value) is str:  # the usual case, first: every text field of every record
        return None if value.strip().lower() in _NULLISH else value
    if value is None or isinstance(value, bool):
        return None if value is None else str(value).lower()
    if isinstance(value, str):
        return None if value.strip().lower() in _NULLISH else value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def lenient_int(value: object, _: object = None) -> int | None:
    """An int from an int or numeric string; ``None`` for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def maybe_json(value: object) -> object:
    """Decode ``value`` if it is a string holding JSON, else return it unchanged."""
    if type(value) is dict:  # kie's usual resultInfoJson; the checks below would say the same
        return value
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


#: The usual result URL, ``https://`` and a plain host name up to its path, query or end: one
#: :func:`is_web_url` accepts without parsing it (any other goes through ``urlsplit``).
_PLAIN_HTTPS = re.compile(r"https://[A-Za-z0-9.-]+(?:[/?#]|\Z)")


@functools.lru_cache(maxsize=64)
def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost``, ``127.0.0.0/8``, ``::1``). Cached:
    result URLs name the same few hosts over and over."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_web_url(value: str) -> bool:
    """Whether ``value`` is a URL the SDK may fetch or hand out: absolute ``https://`` with a
    host, or ``http://`` to a loopback host (the fake server), without whitespace or control
    characters. ``javascript:``, ``file:``, ``data:``, relative and scheme-relative URLs, and
    a URL inside quotes or brackets are not."""
    if not value.isprintable() or " " in value:  # every other space is not printable
        return False
    if _PLAIN_HTTPS.match(value):
        return True  # urlsplit would say the same: https, this host, no port, no user
    return _parsed_is_web_url(value)


def _parsed_is_web_url(value: str) -> bool:
    """:func:`is_web_url` past its first checks, by ``urlsplit``: the full reading."""
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return False
    if not host:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))


def _kept_url(value: str) -> bool:
    if is_web_url(value):
        return True
    log.warning(
        "ignoring a result URL that is not an absolute https:// URL: %s", printable(value[:200])
    )
    return False


def result_urls(value: object, _: object = None) -> tuple[str, ...]:
    """Every result URL in any of the shapes kie.ai uses, as plain strings, in order.

    Only URLs that pass :func:`is_web_url` are kept; any other non-empty string is left out
    with a warning (it stays in the record's raw ``data``).
    """
    value = maybe_json(value)
    if type(value) is dict or isinstance(value, Mapping):  # ``type``: skips the ABC machinery
        value = maybe_json(value.get("resultUrls", value.get("result_urls")))
    if isinstance(value, str):
        # Still a string after maybe_json: either one bare URL, or JSON too broken to decode
        # (e.g. cut short), which must not be handed out as a URL.
        return (value,) if nullable_str(value) and _kept_url(value) else ()
    if not isinstance(value, list | tuple):
        return ()
    urls: list[str] = []
    for item in value:
        if type(item) is dict or isinstance(item, Mapping):
            item = item.get("resultUrl", item.get("url"))
        if isinstance(item, str) and nullable_str(item) and _kept_url(item):
            urls.append(item)
    return tuple(urls)


def json_object(value: object, _: object = None) -> Mapping[str, Any] | None:
    """A JSON object from an object or a JSON string; ``None`` for anything else."""
    value = maybe_json(value)
    return value if type(value) is dict or isinstance(value, Mapping) else None


def _required_str(value: object, _: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or nullable_str(value) is None:
        raise ValueError(f"expected a non-empty string, got {value!r:.80}")
    return value


def _structure_with_wire_names(cls: type[Any], conv: cattrs.Converter) -> Callable[..., Any]:
    overrides = {}
    for f in attrs.fields(cls):
        if not f.init:
            continue
        name = wire_name(f)
        overrides[f.name] = override(omit=True) if name is None else override(rename=name)
    # Without detailed validation: the generated function calls each field's hook without
    # collecting errors field by field; parse_record checks the one field that can fail first.
    return make_dict_structure_fn(
        cls,
        conv,
        _cattrs_detailed_validation=False,
        **overrides,  # type: ignore[arg-type]
    )


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_structure_hook(str, _required_str)
    # The readers themselves are the hooks (their second argument takes the type cattrs passes
    # and ignores it): no wrapper call per field.
    conv.register_structure_hook(str | None, nullable_str)
    conv.register_structure_hook(int | None, lenient_int)
    conv.register_structure_hook_func(lambda t: t == tuple[str, ...], result_urls)
    conv.register_structure_hook_func(lambda t: t == Mapping[str, Any] | None, json_object)
    conv.register_structure_hook_factory(
        lambda t: t is TaskRecord, lambda t: _structure_with_wire_names(t, conv)
    )
    return conv


_converter = _make_converter()
#: TaskRecord's structure function, looked up once: ``_converter.structure`` would find it
#: again by type on every record.
_structure_record: Callable[[Mapping[str, Any], type[TaskRecord]], TaskRecord] = (
    _converter.get_structure_hook(TaskRecord)
)


def parse_record(data: object, *, task_id: str = "", endpoint: str = "") -> TaskRecord:
    """A :class:`TaskRecord` from the ``data`` of a record-info answer.

    ``task_id`` fills in a missing ``taskId`` (the id that was asked about).

    Raises:
        UnexpectedResponseError: ``data`` is not an object, or has no usable task id.
    """
    if type(data) is not dict and not isinstance(data, Mapping):
        raise UnexpectedResponseError(
            message=f"record data is {type(data).__name__}, not an object",
            endpoint=endpoint,
            body_excerpt=repr(data)[:300],
        )
    payload: Mapping[str, Any] = data  # only read: copied only if its task id is replaced
    given = data.get("taskId")
    usable = isinstance(given, str | int) and not isinstance(given, bool)
    if not usable or nullable_str(given) is None:
        # The task id is the one field that can make a record unreadable, so it is checked here,
        # where the message can name it (the converter's hooks run without cattrs' per-field
        # error reports).
        if not task_id:
            if given is None:
                what = "missing"
            elif isinstance(given, str):
                what = "empty"  # or kie's "null": nullable_str's reading
            else:
                what = f"a {type(given).__name__}, not a string"
            raise UnexpectedResponseError(
                message=f"record data cannot be read: taskId is {what}",
                endpoint=endpoint,
                body_excerpt=repr(data)[:300],
            )
        # The id that was asked about is the truth when the answer's own is missing or garbled.
        payload = {**data, "taskId": task_id}
    try:
        record = _structure_record(payload, TaskRecord)
    except (ValueError, TypeError, KeyError) as exc:  # whatever a hook or attrs may still raise
        raise UnexpectedResponseError(
            message=f"record data cannot be read: {exc}",
            endpoint=endpoint,
            body_excerpt=repr(data)[:300],
        ) from exc
    # ``data`` is not a wire field, so it is attached here. The record is new and not shared yet,
    # so setting the slot directly (as attrs' own __init__ does on frozen classes) is safe, and
    # skips the second __init__ of ``attrs.evolve``, which would parse both times again.
    object.__setattr__(record, "data", data)
    return record


# -- a poll that says "still generating" ---------------------------------------------------------
#
# Most polls of a bulk run say "still generating": the waiting loop goes on without building
# their record (tests/test_fast_paths.py checks that such data always parses as GENERATING).


class Generating:
    """What a poll gives when kie.ai says the task is still generating: nothing more is needed
    to go on waiting (the record is built from the same data when asked for)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<still generating>"


GENERATING = Generating()


def still_generating(data: object) -> bool:
    """Whether a record-info ``data`` says "still generating" (``successFlag`` 0), in which
    case a waiting loop needs nothing else from it: the record can be built later, from the
    same data, if anyone asks for it (:func:`parse_record` cannot fail on such data when the
    task id is known).
    """
    if type(data) is not dict:
        return False
    flag = data.get("successFlag")
    return flag == 0 if type(flag) is int else lenient_int(flag) == 0
