"""The decisions of a download, without its I/O: how long it may take, how fast it must go,
what its file is called, which redirects may be followed, and which failures are worth
another try.

Pure: the caller passes the clock, the URLs and the answers.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath
from urllib.parse import unquote, urljoin, urlsplit

from .._errors import DownloadError, KieError, TransportError

__all__ = ["SpeedCheck", "file_name", "redirect_target"]

#: Bytes read at a time: memory use stays flat whatever the file size.
CHUNK_SIZE = 64 * 1024
#: Bytes handed to the writer thread at a time (fewer thread hops per file).
WRITE_SIZE = 4 * CHUNK_SIZE
#: File-host answers that mean the link is dead or expired: ask kie.ai for a fresh one.
EXPIRED_STATUSES = frozenset({403, 404, 410})
#: Answers that send the GET elsewhere; each hop is checked by :func:`redirect_target`.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_SUFFIX = re.compile(r"\.[a-z0-9]{1,8}")
_MAX_STEM = 120


class SpeedCheck:
    """Whether a body arrives fast enough: at least ``min_speed`` bytes per second, averaged
    over windows of ``window`` seconds (like curl's ``--speed-limit``/``--speed-time``). Pure:
    the caller passes the clock."""

    __slots__ = ("_bytes", "_min_speed", "_since", "_window")

    def __init__(self, min_speed: float, window: float, now: float) -> None:
        self._min_speed = min_speed
        self._window = window
        self._since = now
        self._bytes = 0

    def feed(self, now: float, size: int) -> str | None:
        """Count ``size`` bytes that arrived at ``now``; returns why the body is too slow, or
        ``None`` while it is fast enough."""
        self._bytes += size
        elapsed = now - self._since
        if elapsed < self._window or not self._min_speed:
            return None
        rate = self._bytes / elapsed
        if rate < self._min_speed:
            return (
                f"the file host sent {self._bytes} bytes in {elapsed:.1f}s ({rate:.0f} B/s), "
                f"below the minimum of {self._min_speed:g} B/s"
            )
        self._since, self._bytes = now, 0
        return None


def file_name(task_id: str, index: int, url: str) -> str:
    """``<task_id>_<index><ext>``, safe on every file system and unique per task id; the
    extension comes from the URL's path (``.mp4`` when it has none that looks like one).

    An id made only of letters, digits, ``_``, ``.`` and ``-`` (with no upper case letter and
    no leading dot) keeps its name as it is. Any other id is made safe and gets ``~`` and a
    short hash of the real id, so ``a:b`` and ``a_b`` (or ``AB`` and ``ab`` on a
    case-insensitive disk) never share a file, and the same id always gets the same name.

    Example::

        >>> file_name("ee603959", 0, "https://cdn.example/v.mp4")
        'ee603959_0.mp4'
        >>> file_name("a:b", 0, "https://cdn.example/v.mp4")
        'a_b~6783a31eab_0.mp4'
    """
    stem = _UNSAFE.sub("_", task_id).lstrip(".")[:_MAX_STEM] or "task"
    if stem != task_id or stem != stem.lower():
        digest = hashlib.sha256(task_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        stem = f"{stem}~{digest}"
    try:
        suffix = PurePosixPath(unquote(urlsplit(url).path)).suffix.lower()
    except ValueError:
        suffix = ""
    if not _SUFFIX.fullmatch(suffix):
        suffix = ".mp4"
    return f"{stem}_{index}{suffix}"


def scheme_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "not a valid URL"
    if parts.scheme.lower() not in ("http", "https") or not host:
        return f"not an http(s) URL ({parts.scheme or 'no scheme'}:)"
    return None


def redirect_target(current: str, location: str | None) -> str:
    """The absolute URL a redirect from ``current`` to ``location`` leads to.

    Raises:
        ValueError: the redirect must not be followed: no ``Location``, a non-http(s) target
            (``file:``, ``ftp:``, ``javascript:``...), or a downgrade from https to plain http.

    Example::

        >>> redirect_target("https://cdn.example/a/v.mp4", "/b/v.mp4?sig=1")
        'https://cdn.example/b/v.mp4?sig=1'
        >>> redirect_target("https://cdn.example/v.mp4", "http://cdn.example/v.mp4")
        Traceback (most recent call last):
        ...
        ValueError: refused a redirect from https to plain http (cdn.example)
    """
    if location is None or not location.strip():
        raise ValueError("a redirect without a Location header")
    try:
        target = urljoin(current, location.strip())
    except ValueError:
        raise ValueError("a redirect to an invalid URL") from None
    problem = scheme_problem(target)
    if problem is not None:
        raise ValueError(f"refused a redirect to a URL that is {problem}")
    parts = urlsplit(target)
    if urlsplit(current).scheme.lower() == "https" and parts.scheme.lower() == "http":
        raise ValueError(f"refused a redirect from https to plain http ({parts.hostname})")
    return target


def transient(exc: KieError) -> bool:
    """A failure worth another try: the connection, or a busy or failing file host."""
    if isinstance(exc, TransportError):
        return True
    status = getattr(exc, "http_status", None)
    return (
        isinstance(exc, DownloadError) and status is not None and (status == 429 or status >= 500)
    )
