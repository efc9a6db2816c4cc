"""The pure protocol: what to send, and what an answer means. No I/O happens here.

:func:`decipher` is the one place that reads kie's ``code``: it turns an HTTP exchange
``(status, headers, body)`` into the envelope's ``data`` or raises the matching error.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from .._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    FeatureDisabledError,
    GenerationFailedError,
    InsufficientCreditsError,
    NotFoundError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    TaskNotFoundError,
    UnexpectedResponseError,
    UnprocessableError,
    ValidationError,
)
from .._kinds.common import check_task_id
from .._version import __version__
from .wire import is_web_url, lenient_int, nullable_str

EXTEND_PATH = "/api/v1/mj/generateVideoExtend"
RECORD_PATH = "/api/v1/mj/record-info"
CREDIT_PATH = "/api/v1/chat/credit"
DOWNLOAD_URL_PATH = "/api/v1/common/download-url"

DEFAULT_BASE_URL = "https://api.kie.ai"
USER_AGENT = f"kie-async/{__version__}"

_ERRORS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    404: NotFoundError,
    422: UnprocessableError,
    429: RateLimitError,
    455: ServiceUnavailableError,
    500: ServerError,
    501: GenerationFailedError,
    505: FeatureDisabledError,
}

_EXCERPT = 300


def auth_headers(api_key: str, user_agent: str = USER_AGENT) -> dict[str, str]:
    """The headers every call carries. kie sits behind Cloudflare, which refuses library-default
    user agents (HTTP 403, "error code: 1010"), so the agent is always explicit. Only the
    encodings the client inflates itself, within the answer size cap, are accepted."""
    return {
        "Authorization": f"Bearer {api_key}",
        "User-Agent": user_agent,
        "Accept": "application/json",
        "Accept-Encoding": "gzip",
    }


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), or ``None``."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def error_for(
    code: int,
    message: str,
    *,
    http_status: int,
    endpoint: str = "",
    retry_after: float | None = None,
    url: str = "",
) -> APIError:
    """The :class:`APIError` subclass for ``code``; any other 5xx is a :class:`ServerError`."""
    cls = _ERRORS.get(code)
    if cls is None:
        cls = ServerError if 500 <= code <= 599 else APIError
    if cls is UnprocessableError and endpoint == RECORD_PATH and "null" in message.lower():
        cls = TaskNotFoundError
    return cls(
        code=code,
        message=message,
        http_status=http_status,
        endpoint=endpoint,
        retry_after=retry_after,
        url=url,
    )


def _excerpt(body: bytes) -> str:
    return body[:_EXCERPT].decode("utf-8", errors="replace")


def _success_data(envelope: dict[str, Any], status: int, endpoint: str, url: str) -> Any:
    """A success envelope's ``data``. On ``record-info``, an explicit ``"data": null`` is how
    kie's backend also says "no such task" (its sibling record-info endpoints answer unknown
    ids with ``{"code": 200, "msg": "success", "data": null}``): :class:`TaskNotFoundError`,
    as the 422 "recordInfo is null" is (a waiting loop's not-found grace applies to both)."""
    data = envelope.get("data")
    if data is None and endpoint == RECORD_PATH and "data" in envelope:
        raise TaskNotFoundError(
            code=200,
            message="no such task (record-info answered success with data: null)",
            http_status=status,
            endpoint=endpoint,
            url=url,
        )
    return data


def decipher(
    status: int, headers: Mapping[str, str], body: bytes, *, endpoint: str = "", url: str = ""
) -> Any:
    """Turn one HTTP answer into the envelope's ``data``, or raise. ``url`` (what was called,
    without secrets) is named by any error raised.

    Checks both the HTTP status and the body's ``code``, since kie.ai usually reports errors
    inside HTTP 200 answers.

    Raises:
        APIError: a subclass for kie's code (from the body, or from the HTTP status when the
            body has no envelope but the status is a 4xx, or a documented code).
        TaskNotFoundError: from ``record-info``, code 422 "recordInfo is null", or a success
            whose ``data`` is ``null``.
        UnexpectedResponseError: the answer is not kie's JSON envelope (an HTML error page with
            a 5xx status, truncated JSON, a 2xx answer without ``code``).
    """
    envelope: object = None
    # Only an object can be kie's envelope: anything else (an HTML page, a stream of garbage)
    # is not parsed at all.
    if body.lstrip(b" \t\r\n")[:1] == b"{":
        try:
            envelope = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            envelope = None
        # The common answer, first: a 2xx whose envelope says 200, as an int.
        if type(envelope) is dict:
            code = envelope.get("code")
            if code == 200 and type(code) is int and 200 <= status < 300:
                return _success_data(envelope, status, endpoint, url)

    retry_after = parse_retry_after(headers.get("Retry-After"))
    if isinstance(envelope, dict) and "code" in envelope:
        code = lenient_int(envelope["code"])
        message = nullable_str(envelope.get("msg")) or ""
        if code == 200 and 200 <= status < 300:
            return _success_data(envelope, status, endpoint, url)
        if code is None or code == 200:
            # An error status with a success (or unreadable) body: the status is the truth.
            code = status if status >= 400 else -1
        if code == -1:
            raise UnexpectedResponseError(
                message=f"envelope code {envelope['code']!r:.40} is not a number",
                http_status=status,
                endpoint=endpoint,
                body_excerpt=_excerpt(body),
                url=url,
            )
        raise error_for(
            code,
            message or f"HTTP {status}",
            http_status=status,
            endpoint=endpoint,
            retry_after=retry_after,
            url=url,
        )

    if 400 <= status < 500:
        # No envelope, but a 4xx says plainly that the request was refused (Cloudflare's 429 or
        # 403 pages, kie's 455 maintenance). A bare 5xx says nothing certain: it stays unexpected.
        text = _excerpt(body).strip()
        if status == 403 and "1010" in text:
            text += " (the request's User-Agent was refused by the server's firewall)"
        elif status == 404:
            # A path the server does not route (kie's own answer is a Spring Boot error body:
            # real-samples O11): a wrong base_url, or an endpoint removed.
            served = "nothing is served at this URL (a wrong base_url, or an endpoint removed?)"
            text = f"{served}: {text}" if text else served
        raise error_for(
            status,
            text or f"HTTP {status}",
            http_status=status,
            endpoint=endpoint,
            retry_after=retry_after,
            url=url,
        )
    what = "not JSON" if envelope is None else "JSON without kie's code/msg/data envelope"
    raise UnexpectedResponseError(
        message=what,
        http_status=status,
        endpoint=endpoint,
        body_excerpt=_excerpt(body),
        url=url,
    )


def unexpected(message: str, data: object, endpoint: str, url: str = "") -> UnexpectedResponseError:
    """An :class:`UnexpectedResponseError` for a success envelope whose ``data`` is unusable."""
    excerpt = repr(data)[:_EXCERPT]
    return UnexpectedResponseError(message, 200, endpoint, body_excerpt=excerpt, url=url)


def created_task_id(data: object, endpoint: str = EXTEND_PATH, url: str = "") -> str:
    """The new task id from a create's ``data`` (``{"taskId": ...}``), for any kind."""
    task_id = nullable_str(data.get("taskId")) if isinstance(data, Mapping) else None
    if task_id is None:
        raise unexpected("the create answer carries no taskId", data, endpoint, url)
    try:
        check_task_id(task_id)
    except ValidationError:
        # A newline or an escape sequence in an id would reach logs, journals and terminals.
        what = "the create answer's taskId is not a task id"
        raise unexpected(what, data, endpoint, url) from None
    return task_id


def credit_balance(data: object) -> Decimal:
    """The remaining credit balance from ``/api/v1/chat/credit`` (a number, maybe fractional)."""
    if isinstance(data, bool) or not isinstance(data, int | float | str):
        raise unexpected("the credit balance is not a number", data, CREDIT_PATH)
    try:
        balance = Decimal(str(data).strip())
    except InvalidOperation:
        raise unexpected("the credit balance is not a number", data, CREDIT_PATH) from None
    if not balance.is_finite():
        raise unexpected("the credit balance is not a finite number", data, CREDIT_PATH)
    return balance


def download_link(data: object) -> str:
    """The temporary download link from ``/api/v1/common/download-url``."""
    link = data.get("url", data.get("downloadUrl")) if isinstance(data, Mapping) else data
    if not isinstance(link, str) or nullable_str(link) is None:
        raise unexpected("the download-url answer carries no link", data, DOWNLOAD_URL_PATH)
    if not is_web_url(link):
        raise unexpected(
            "the download-url answer's link is not an absolute https:// URL",
            data,
            DOWNLOAD_URL_PATH,
        )
    return link
