"""The exceptions kie_async raises.

Every error is a :class:`KieError`; catch that to catch everything the SDK raises::

    KieError
    ├── ValidationError (ValueError)        bad input, caught before any request is sent
    ├── ConfigurationError (ValueError)     bad client settings: no API key, unsafe base URL
    ├── ClientClosedError (RuntimeError)    the client was used after aclose()
    ├── APIError                            the API answered with an error code
    │   ├── BadRequestError                 400
    │   ├── AuthenticationError             401  missing or invalid API key
    │   ├── InsufficientCreditsError        402  the account is out of credits
    │   ├── NotFoundError                   404
    │   ├── UnprocessableError              422  validation failed on kie's side
    │   │   └── TaskNotFoundError           422  "recordInfo is null": no such task
    │   ├── RateLimitError                  429  request refused (not queued)
    │   ├── ServiceUnavailableError         455  maintenance
    │   ├── ServerError                     500 and other 5xx
    │   ├── GenerationFailedError           501
    │   └── FeatureDisabledError            505
    ├── TransportError                      the network failed: refused, reset, timed out
    ├── UnexpectedResponseError             an answer that is not kie's documented JSON
    ├── SubmissionUncertainError            a create whose reply was lost: it may be paid for  (*)
    ├── DownloadError                       a result file could not be saved to disk
    ├── BudgetExceededError                 not sent: it could take a run past max_credits
    └── TaskError                           a task ended badly  (*)
        ├── TaskFailedError                 successFlag 2 or 3  (*)
        └── TaskTimeoutError (TimeoutError) the wait's deadline passed first  (*)

(*) defined in ``_tasks/errors.py``: they carry a record or a request, and this module imports no
model, so that the requests and records layers can raise the errors defined here.

kie.ai reports most errors inside HTTP 200 answers; an :class:`APIError` is raised for the same
code whether it came in the body or as the HTTP status.

None of these errors ever holds the API key: not in its fields, not in its ``repr()``, not in its
``__cause__``/``__context__`` chain (a foreign exception that carries the request's headers, such
as aiohttp's ``ClientResponseError``, is described in the message, never chained), and a key that
a server reflects back is redacted (``***``) before any text of the answer is kept. The ``str()``
of an error shows a server's text with control characters escaped, so it is safe to print or log.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import attrs

from ._text import printable

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ClientClosedError",
    "ConfigurationError",
    "DownloadError",
    "FeatureDisabledError",
    "GenerationFailedError",
    "InsufficientCreditsError",
    "KieError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
    "TaskNotFoundError",
    "TransportError",
    "UnexpectedResponseError",
    "UnprocessableError",
    "ValidationError",
]


class KieError(Exception):
    """The base of every exception kie_async raises.

    Example::

        try:
            record = await handle
        except kie_async.KieError as exc:
            print("kie.ai run failed:", exc)
    """


@attrs.define(eq=False, str=False)
class ValidationError(KieError, ValueError):
    """An input was rejected before any request was sent, so no credits were spent.

    Attributes:
        field: the name of the offending argument or field, e.g. ``"prompt"``.
        reason: what is wrong with it.
    """

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


@attrs.define(eq=False, str=False)
class ConfigurationError(KieError, ValueError):
    """The client cannot be set up as asked: no API key, an unsafe or malformed base URL.

    Attributes:
        setting: the name of the setting, e.g. ``"api_key"``.
        reason: what is wrong and how to fix it.
    """

    setting: str
    reason: str

    def __str__(self) -> str:
        return f"{self.setting}: {self.reason}"


class ClientClosedError(KieError, RuntimeError):
    """The :class:`~kie_async.KieClient` was used after :meth:`~kie_async.KieClient.aclose`."""


@attrs.define(eq=False, str=False)
class APIError(KieError):
    """The API (kie.ai, or whatever ``base_url`` names) answered with an error code, in the
    JSON body or as the HTTP status. ``str()`` names the URL that answered.

    Attributes:
        code: kie's code (the body's ``code`` when there is one, else the HTTP status).
        message: kie's ``msg``, or a short description when the answer had none.
        http_status: the HTTP status of the answer (kie often says 200 even for errors).
        endpoint: the API path that answered, e.g. ``"/api/v1/mj/record-info"``.
        retry_after: seconds the server asked us to wait (a ``Retry-After`` header), if any.
        url: the URL that answered, as called (the client's ``base_url``, which may be a proxy
            or a fake server, and the path), without any user name, password or query; ``""``
            when not known.
    """

    code: int
    message: str
    http_status: int
    endpoint: str = ""
    retry_after: float | None = None
    url: str = ""

    def __str__(self) -> str:
        return (
            f"API error {self.code}{_where(self)}: {printable(self.message)} "
            f"(HTTP {self.http_status})"
        )


class BadRequestError(APIError):
    """kie.ai code 400: the request was malformed."""


class AuthenticationError(APIError):
    """kie.ai code 401: the API key is missing or invalid. Nothing will work until it is fixed."""


class InsufficientCreditsError(APIError):
    """kie.ai code 402: the account is out of credits. Further submissions will fail too."""


class NotFoundError(APIError):
    """kie.ai code 404: the resource does not exist."""


class UnprocessableError(APIError):
    """kie.ai code 422: kie.ai rejected the parameters (its own validation)."""


class TaskNotFoundError(UnprocessableError):
    """kie.ai knows no task with this id: code 422 ``"recordInfo is null"``, or a success
    whose ``data`` is ``null`` (``code`` 200), as kie's sibling record-info endpoints answer."""


class RateLimitError(APIError):
    """kie.ai code 429: the request was refused, not queued: nothing was created.

    kie.ai allows about 20 new generation requests per 10 seconds per account.
    """


class ServiceUnavailableError(APIError):
    """kie.ai code 455: the service is down for maintenance. Transient."""


class ServerError(APIError):
    """kie.ai code 500, or any other 5xx answer (proxy error pages included)."""


class GenerationFailedError(APIError):
    """kie.ai code 501: the generation failed."""


class FeatureDisabledError(APIError):
    """kie.ai code 505: the feature is disabled for this account."""


@attrs.define(eq=False, str=False)
class TransportError(KieError):
    """The network failed: connection refused or reset, a TLS failure, a malformed HTTP answer,
    or no (complete) answer within the timeouts.

    Attributes:
        message: what happened, e.g. ``"connection reset by peer"``.
        endpoint: the API path that was being called.
        sent: whether the request may have reached the server (``False`` only when the
            connection was never established, so the server cannot have seen it).
        permanent: whether trying again cannot help: a TLS certificate or protocol failure
            (for example an ``https://`` base URL that points to a plain-http server) or an
            invalid URL. Such failures are never retried.
        url: the URL that was called, without any user name, password or query (see
            :attr:`APIError.url`); ``""`` when not known.
    """

    message: str
    endpoint: str = ""
    sent: bool = True
    permanent: bool = False
    url: str = ""

    def __str__(self) -> str:
        where = _where(self).replace(" from ", " calling ", 1)
        return f"network error{where}: {printable(self.message)}"


@attrs.define(eq=False, str=False)
class UnexpectedResponseError(KieError):
    """kie.ai (or a proxy in front of it) answered with something that is not its documented JSON.

    Attributes:
        message: what was wrong with the answer.
        http_status: the HTTP status of the answer.
        endpoint: the API path that answered.
        body_excerpt: the first few hundred characters of the answer, for diagnosis.
        url: the URL that answered, without any user name, password or query (see
            :attr:`APIError.url`); ``""`` when not known.
    """

    message: str
    http_status: int = 0
    endpoint: str = ""
    body_excerpt: str = ""
    url: str = ""

    def __str__(self) -> str:
        status = f" (HTTP {self.http_status})" if self.http_status else ""
        return f"unexpected answer{_where(self)}{status}: {printable(self.message)}"


def _where(exc: APIError | TransportError | UnexpectedResponseError) -> str:
    """`` from <the URL called>`` (or the path alone, when the URL is not known), or ``""``."""
    place = exc.url or exc.endpoint
    return f" from {printable(place)}" if place else ""


@attrs.define(eq=False, str=False)
class DownloadError(KieError):
    """A result file could not be saved: the file host refused it, the connection failed, the
    body was shorter than announced, or the disk write failed.

    Nothing is ever left under the final file name, so rerunning the download is safe: files
    already complete are skipped, and this one starts over.

    Attributes:
        url: the file's URL (shown without its query, which may hold a temporary token).
        reason: what went wrong.
        path: where the file was to be saved, if known.
        task_id: the task the file belongs to, if known.
        http_status: the file host's HTTP status, when it answered with an error.
    """

    url: str
    reason: str
    path: str | None = None
    task_id: str | None = None
    http_status: int | None = None

    def __str__(self) -> str:
        if not self.url:  # before any file: the destination itself is at fault
            return f"download failed: {printable(self.reason)}"
        where = printable(self.url.split("?", 1)[0])
        target = f" to {printable(self.path)}" if self.path else ""
        return f"download of {where}{target} failed: {printable(self.reason)}"


@attrs.define(eq=False, str=False)
class BudgetExceededError(KieError):
    """A create that a bulk run did not send: its price could take the run's spend past its
    ``max_credits``. The request's outcome is :attr:`OutcomeKind.NOT_SUBMITTED`.

    Attributes:
        price: the credits the create would cost.
        spent: the run's spend when it was held back (creates answered, uncertain or on the
            wire, and what the journal records of earlier runs).
        max_credits: the run's budget.
        reason: always ``"budget"``.
        upper_bound: ``price`` is only the most the create could cost: its price was still to
            be learned (``prices={key: "learn"}``), bounded by the balance or the ceiling.
    """

    price: Decimal
    spent: Decimal
    max_credits: Decimal
    reason: str = "budget"
    upper_bound: bool = False

    def __str__(self) -> str:
        if self.upper_bound:
            return (
                f"not sent (budget): its price is still to be learned and it could cost up to "
                f"{self.price} credits (the balance, or the learn:CEILING given), and "
                f"{self.spent} of the {self.max_credits} allowed are spent: give a lower "
                "ceiling (learn:CEILING) or the price"
            )
        return (
            f"not sent (budget): it costs {self.price} credits, and {self.spent} of the "
            f"{self.max_credits} allowed are spent"
        )


def exception_fields(exc: BaseException) -> dict[str, Any]:
    """The structured fields of a kie_async error, for journals and JSON output."""
    out: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    cls = type(exc)
    if attrs.has(cls):
        for f in attrs.fields(cls):
            value = getattr(exc, f.name)
            if isinstance(value, str | int | float | bool) or value is None:
                out[f.name] = value
    return out
