"""What an answer means: kie's codes mapped to errors, in the body or as the HTTP status."""

from __future__ import annotations

import email.utils
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.http import SERVER_SOFTWARE

from kie_async import (
    APIError,
    AuthenticationError,
    BadRequestError,
    FeatureDisabledError,
    GenerationFailedError,
    InsufficientCreditsError,
    KieClient,
    NotFoundError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    TaskNotFoundError,
    UnexpectedResponseError,
    UnprocessableError,
    __version__,
)
from kie_async._protocol.envelope import (
    CREDIT_PATH,
    RECORD_PATH,
    decipher,
    parse_retry_after,
)
from kie_async.testing import FakeKieServer, fast_client

DOCUMENTED: dict[int, type[APIError]] = {
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
CODES = sorted(DOCUMENTED)


def envelope(code: object, msg: str = "", data: Any = None) -> bytes:
    return json.dumps({"code": code, "msg": msg, "data": data}).encode()


@pytest.fixture(name="once")
async def _once(server: FakeKieServer) -> AsyncIterator[KieClient]:
    """A client for the fake server that never retries, so each error surfaces as it came."""
    async with fast_client(server, max_retries=0) as client:
        yield client


# -- pure ----------------------------------------------------------------------------------------


def test_success_returns_data() -> None:
    """A 200 answer with code 200 yields the envelope's data, whatever it is."""
    assert decipher(200, {}, envelope(200, "success", {"taskId": "t1"})) == {"taskId": "t1"}
    assert decipher(200, {}, envelope(200, "success", 60.62)) == 60.62
    assert decipher(200, {}, envelope("200", "success", None)) is None


@pytest.mark.parametrize("code", CODES)
def test_body_code_maps_to_its_error(code: int) -> None:
    """Each documented code in the body of an HTTP 200 raises exactly its APIError subclass."""
    with pytest.raises(APIError) as info:
        decipher(200, {}, envelope(code, "went wrong"), endpoint=CREDIT_PATH)
    exc = info.value
    assert type(exc) is DOCUMENTED[code]
    assert (exc.code, exc.message, exc.http_status, exc.endpoint) == (
        code,
        "went wrong",
        200,
        CREDIT_PATH,
    )


@pytest.mark.parametrize("code", CODES)
def test_status_wins_over_a_success_body(code: int) -> None:
    """An error HTTP status maps to its class even when the body claims code 200."""
    with pytest.raises(APIError) as info:
        decipher(code, {}, envelope(200, "success"), endpoint=CREDIT_PATH)
    assert type(info.value) is DOCUMENTED[code]
    assert (info.value.code, info.value.http_status) == (code, code)


@pytest.mark.parametrize("code", [c for c in CODES if c < 500])
def test_bare_4xx_status_maps_to_its_error(code: int) -> None:
    """A 4xx without kie's envelope (a proxy page) still maps to the code's class."""
    with pytest.raises(APIError) as info:
        decipher(code, {}, b"<html>refused</html>")
    assert type(info.value) is DOCUMENTED[code]
    assert info.value.http_status == code


def test_unknown_code_is_a_plain_api_error() -> None:
    """An undocumented 4xx code is an APIError; an undocumented 5xx is a ServerError."""
    with pytest.raises(APIError) as info:
        decipher(200, {}, envelope(418, "teapot"))
    assert type(info.value) is APIError
    with pytest.raises(ServerError):
        decipher(200, {}, envelope(503, "busy"))


def test_record_info_null_is_task_not_found() -> None:
    """422 "recordInfo is null" from record-info is TaskNotFoundError, elsewhere a plain 422."""
    body = envelope(422, "recordInfo is null")
    with pytest.raises(TaskNotFoundError) as info:
        decipher(200, {}, body, endpoint=RECORD_PATH)
    assert isinstance(info.value, UnprocessableError)
    with pytest.raises(UnprocessableError) as other:
        decipher(200, {}, body, endpoint=CREDIT_PATH)
    assert type(other.value) is UnprocessableError


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (502, b"<html><head><title>502 Bad Gateway</title></head></html>"),
        (503, b""),
        (200, b'{"code": 200, "msg": "succ'),
        (200, b"\xff\xfe not utf-8"),
        (200, b'{"msg": "no code"}'),
        (200, b"[1, 2, 3]"),
        (200, envelope("two hundred")),
    ],
)
def test_non_envelope_answers_are_unexpected(status: int, body: bytes) -> None:
    """HTML 5xx pages, truncated or undecodable JSON, and JSON without a code are unexpected."""
    with pytest.raises(UnexpectedResponseError) as info:
        decipher(status, {}, body, endpoint=RECORD_PATH)
    assert info.value.http_status == status
    assert info.value.endpoint == RECORD_PATH
    assert len(info.value.body_excerpt) <= 300


def test_retry_after_header_is_carried() -> None:
    """A Retry-After header's seconds reach the raised error."""
    with pytest.raises(RateLimitError) as info:
        decipher(429, {"Retry-After": "7"}, b"Too Many Requests")
    assert info.value.retry_after == 7.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("12", 12.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("nan", None),
        ("inf", None),
        ("soon", None),
    ],
)
def test_parse_retry_after_seconds(value: str | None, expected: float | None) -> None:
    """Retry-After in seconds is read; negative is zero; junk and non-finite values are None."""
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    """Retry-After as an HTTP date gives the seconds from now until then (never negative)."""
    now = 1_700_000_000.0
    later = email.utils.formatdate(now + 30, usegmt=True)
    earlier = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(later, now=now) == pytest.approx(30.0)
    assert parse_retry_after(earlier, now=now) == 0.0


# -- over HTTP -----------------------------------------------------------------------------------


@pytest.mark.parametrize("as_status", [False, True], ids=["in-body", "as-http-status"])
@pytest.mark.parametrize("code", CODES)
async def test_each_code_over_http(
    once: KieClient, server: FakeKieServer, code: int, as_status: bool
) -> None:
    """Each documented code raises its class whether kie sends it in a 200 body or as status."""
    server.http_errors = as_status
    server.answer_next("credit", code, f"scripted {code}")
    with pytest.raises(APIError) as info:
        await once.credits()
    exc = info.value
    assert type(exc) is DOCUMENTED[code]
    assert exc.code == code
    assert exc.message == f"scripted {code}"
    assert exc.http_status == (code if as_status else 200)
    assert exc.endpoint == CREDIT_PATH
    assert server.counts["request:credit"] == 1


@pytest.mark.parametrize("as_status", [False, True], ids=["in-body", "as-http-status"])
async def test_create_path_maps_codes_too(
    once: KieClient, server: FakeKieServer, as_status: bool
) -> None:
    """A create refused with 402 raises InsufficientCreditsError from the create endpoint."""
    server.http_errors = as_status
    server.answer_next("create", 402, "Credits insufficient")
    with pytest.raises(InsufficientCreditsError) as info:
        await once.extend_video("src", prompt="go")
    assert info.value.endpoint == "/api/v1/mj/generateVideoExtend"
    assert server.creates == []


async def test_unknown_task_is_task_not_found(once: KieClient, server: FakeKieServer) -> None:
    """record-info for a task kie does not know raises TaskNotFoundError ("recordInfo is null")."""
    with pytest.raises(TaskNotFoundError) as info:
        await once.get_task("no-such-task")
    assert info.value.code == 422
    assert info.value.message == "recordInfo is null"
    assert info.value.endpoint == RECORD_PATH
    assert server.requests[-1].query == {"taskId": "no-such-task"}


async def test_html_502_is_unexpected(once: KieClient, server: FakeKieServer) -> None:
    """A Cloudflare-style HTML 502 page raises UnexpectedResponseError, with an excerpt."""
    server.fail_next("credit", "html_502")
    with pytest.raises(UnexpectedResponseError) as info:
        await once.credits()
    assert info.value.http_status == 502
    assert "502 Bad Gateway" in info.value.body_excerpt


async def test_truncated_json_is_unexpected(once: KieClient, server: FakeKieServer) -> None:
    """An answer whose JSON is cut short raises UnexpectedResponseError."""
    server.fail_next("credit", "truncated")
    with pytest.raises(UnexpectedResponseError) as info:
        await once.credits()
    assert info.value.http_status == 200
    assert info.value.endpoint == CREDIT_PATH


async def test_library_default_agent_is_refused(server: FakeKieServer) -> None:
    """Cloudflare's 403 "error code: 1010" for aiohttp's default agent raises an APIError."""
    async with fast_client(server, max_retries=0, user_agent=SERVER_SOFTWARE) as kie:
        with pytest.raises(APIError) as info:
            await kie.credits()
    assert (info.value.code, info.value.http_status) == (403, 403)
    assert "1010" in info.value.message
    assert server.counts["rejected:403"] == 1


async def test_explicit_user_agent_is_sent(once: KieClient, server: FakeKieServer) -> None:
    """Every call carries User-Agent kie-async/<version>, so Cloudflare lets it through."""
    await once.credits()
    await once.extend_video("src")
    for request in server.requests:
        assert request.headers["User-Agent"] == f"kie-async/{__version__}"
    assert server.counts["rejected:403"] == 0


async def test_wrong_key_is_authentication_error(server: FakeKieServer) -> None:
    """A key the server does not accept raises AuthenticationError from kie's 200 answer."""
    async with fast_client(server, api_key="wrong-key", max_retries=0) as kie:
        with pytest.raises(AuthenticationError) as info:
            await kie.credits()
    assert info.value.http_status == 200
    assert info.value.message == "You do not have access permissions"
