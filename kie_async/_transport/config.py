"""The settings of a :class:`~kie_async.KieClient`, checked: the API key (kept in a
:class:`Secret` from the first moment), the base URL, the timeouts and the rate limit. Pure: no
I/O; every problem is a :class:`~kie_async.ConfigurationError` naming the setting.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from .._errors import ConfigurationError
from .._policies import RateLimit, RedisRateLimit, Timeout, check_number
from .._protocol.wire import is_loopback
from .._text import printable, redact, redact_bytes
from .limiter import CreateLimiter, Limiter
from .redis_limiter import redis_limiter

_DEFAULT_RATE_LIMIT = RateLimit()


class _Unset:
    """The default of an argument when none is given; its repr is the value it stands for,
    so signatures (``help()``, the API reference) show the real default. Each argument has
    its own (``rate_limit``, ``timeout``, ``connect_timeout``)."""

    __slots__ = ("_shown",)

    def __init__(self, shown: object) -> None:
        self._shown = shown

    def __repr__(self) -> str:
        return repr(self._shown)


UNSET: Any = _Unset(_DEFAULT_RATE_LIMIT)
UNSET_TIMEOUT: Any = _Unset(Timeout())
UNSET_CONNECT: Any = _Unset(Timeout().connect)


class Secret:
    """A value that never shows itself in a repr, str or traceback (``capture_locals``
    included: only ``'***'`` is shown for a local that holds one)."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def reveal(self) -> Any:
        return self._value

    def redact(self, text: str) -> str:
        """``text`` with the secret (as it is, or JSON-escaped) replaced by ``***``."""
        return redact(text, self._value)

    def redact_bytes(self, data: bytes) -> bytes:
        """:meth:`redact` for an answer's raw body."""
        return redact_bytes(data, self._value)

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def check_base_url(base_url: str, allow_insecure_http: bool) -> str:
    if not isinstance(base_url, str):
        raise ConfigurationError("base_url", f"must be a string, not {type(base_url).__name__}")
    if "@" in base_url.partition("://")[2].split("/", 1)[0]:
        # aiohttp refuses credentials in the URL beside the Authorization header, and messages
        # name the URL called: this one is not shown, since it holds a password.
        raise ConfigurationError(
            "base_url", "must not carry a user name or password (user:password@host)"
        )
    shown = printable(repr(base_url[:200]))
    if not base_url.isprintable() or " " in base_url:
        raise ConfigurationError("base_url", f"{shown} contains whitespace or control characters")
    try:
        parts = urlsplit(base_url)
        host = parts.hostname
        port = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ConfigurationError("base_url", f"{shown} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigurationError("base_url", f"{shown} must be an http(s) URL with a host")
    problem = _host_problem(host)
    if problem is None and port == 0:
        problem = "port 0 cannot be connected to"
    if problem is not None:
        raise ConfigurationError("base_url", f"{shown} is not a valid URL ({problem})")
    if parts.query or parts.fragment:
        raise ConfigurationError("base_url", "must not carry a query or fragment")
    if parts.scheme == "http" and not is_loopback(host) and not allow_insecure_http:
        raise ConfigurationError(
            "base_url",
            f"{shown} would send your API key in clear text; use https, a loopback "
            "address, or pass allow_insecure_http=True if you really mean it",
        )
    return base_url.rstrip("/")


_HOST_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")


def _host_problem(host: str) -> str | None:
    """What makes ``host`` impossible to connect to (found only when connecting, otherwise),
    or ``None``: an IP address, or a name whose labels are letters, digits, ``-`` and ``_``
    once IDNA-encoded, each at most 63 characters."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host.partition("%")[0])
        return None
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return "the host name has an empty or over-long label"
    if not _HOST_NAME.fullmatch(ascii_host):
        return "the host name has characters a host name cannot have"
    return None


def _key_problem(given: Secret) -> str | None:
    """What is wrong with the key in ``given``, or ``None``. It returns instead of raising, so
    that no frame holding the key in clear is in the traceback of the error."""
    key = given.reveal()
    if key is not None and not isinstance(key, str):
        return f"the API key must be a string, not {type(key).__name__}"
    if key is None or not key.strip():
        return "no API key: pass KieClient(api_key=...) or set KIE_API_KEY"
    if any(c.isspace() or ord(c) < 32 for c in key.strip()):
        # The CLI shows an api_key reason without the setting's name: the reason names it.
        return "the API key contains whitespace or control characters (is it one line?)"
    return None


def resolve_key(given: Secret) -> Secret:
    """The key in ``given`` (or ``KIE_API_KEY``), stripped and checked, kept in a secret."""
    if given.reveal() is None:
        given = Secret(os.environ.get("KIE_API_KEY"))
    problem = _key_problem(given)
    if problem is not None:
        raise ConfigurationError("api_key", problem)
    return Secret(given.reveal().strip())


#: The largest API answer accepted by default: kie's answers are a few KB.
DEFAULT_MAX_ANSWER_SIZE = 1 << 20


def resolve_timeout(timeout: object, connect_timeout: object) -> Timeout:
    """The :class:`Timeout` for the ``timeout`` and ``connect_timeout`` arguments."""
    if isinstance(timeout, Timeout):
        if connect_timeout is not UNSET_CONNECT:
            raise ConfigurationError(
                "connect_timeout", "with a Timeout object, set Timeout(connect=...) instead"
            )
        return timeout
    default = Timeout()
    read = default.read if timeout is UNSET_TIMEOUT else _seconds("timeout", timeout)
    connect = (
        default.connect
        if connect_timeout is UNSET_CONNECT
        else _seconds("connect_timeout", connect_timeout)
    )
    # A number is the per-read timeout of earlier versions: the overall limit never cuts a
    # request shorter than one connect and one read.
    total = max(default.total or 0.0, read + connect)
    return Timeout(total=total, connect=connect, read=read)


def _seconds(name: str, value: object) -> float:
    return float(check_number(name, value, above=True))


def limiter_for(rate_limit: object, api_key: Secret) -> CreateLimiter:
    """The limiter of creates for the ``rate_limit`` setting (unset: ``KIE_RATE_LIMIT_REDIS``,
    else kie's 20 per 10 s)."""
    if rate_limit is UNSET:
        shared = os.environ.get("KIE_RATE_LIMIT_REDIS", "").strip()
        rate_limit = RedisRateLimit(shared) if shared else _DEFAULT_RATE_LIMIT
    if isinstance(rate_limit, RedisRateLimit):
        return redis_limiter(rate_limit, api_key.reveal())
    if rate_limit is None or isinstance(rate_limit, RateLimit):
        return Limiter(rate_limit)
    raise ConfigurationError("rate_limit", "must be a RateLimit, a RedisRateLimit or None")


def check_pool(max_answer_size: object, max_connections: object, session: object) -> None:
    """Check the transport's settings: the answer size cap, the pool size, a borrowed session."""
    if (
        isinstance(max_answer_size, bool)
        or not isinstance(max_answer_size, int)
        or max_answer_size < 1
    ):
        raise ConfigurationError("max_answer_size", "must be an int >= 1 (bytes)")
    if (
        isinstance(max_connections, bool)
        or not isinstance(max_connections, int)
        or (max_connections < 1)
    ):
        raise ConfigurationError("max_connections", "must be an int >= 1")
    if session is not None and not isinstance(session, aiohttp.ClientSession):
        raise ConfigurationError("session", "must be an aiohttp.ClientSession")
