"""The public surface: exactly the intended names, sorted, each documented."""

from __future__ import annotations

import inspect
import re
from types import ModuleType

import pytest

import kie_async
import kie_async.callbacks
import kie_async.callbacks.starlette
import kie_async.testing

EXPECTED = {
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "BulkRun",
    "Chain",
    "ClientClosedError",
    "ConfigurationError",
    "DownloadError",
    "DownloadPolicy",
    "ExtendMode",
    "ExtendOutcome",
    "ExtendRequest",
    "ExtendStep",
    "FeatureDisabledError",
    "GenerateRequest",
    "GenerationFailedError",
    "InsufficientCreditsError",
    "KieClient",
    "KieError",
    "NotFoundError",
    "OutcomeKind",
    "PollPolicy",
    "Progress",
    "RateLimit",
    "RateLimitError",
    "RedisRateLimit",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "SubmissionUncertainError",
    "TaskError",
    "TaskFailedError",
    "TaskHandle",
    "TaskKind",
    "TaskNotFoundError",
    "TaskRecord",
    "TaskStatus",
    "TaskTimeoutError",
    "Timeout",
    "TransportError",
    "UnexpectedResponseError",
    "UnprocessableError",
    "UpscaleRequest",
    "UpscaleStep",
    "ValidationError",
    "VaryRequest",
    "VaryStep",
    "__version__",
}

EXPECTED_TESTING = {
    "FAULT_KINDS",
    "FakeKieServer",
    "Faults",
    "RecordedRequest",
    "TaskScript",
    "fast_client",
    "sign_callback",
}

EXPECTED_CALLBACKS = {
    "CallbackAnswer",
    "CallbackBodyError",
    "CallbackEvent",
    "CallbackHeaderMissingError",
    "CallbackReceiver",
    "CallbackSignatureError",
    "CallbackTaskIdMismatchError",
    "CallbackTimestampError",
    "CallbackVerificationError",
    "CallbackVerifier",
    "MemoryReplayStore",
    "RedisReplayStore",
    "ReplayStore",
    "parse_callback",
    "sign",
    "verify_callback",
    "verify_signature",
}

MODULES = [
    (kie_async, EXPECTED),
    (kie_async.testing, EXPECTED_TESTING),
    (kie_async.callbacks, EXPECTED_CALLBACKS),
    (kie_async.callbacks.starlette, {"CallbackEndpoint"}),
]


def own_doc(obj: object) -> str:
    """The docstring written for ``obj`` itself (a class's is never inherited)."""
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
        return doc if isinstance(doc, str) else ""
    return inspect.getdoc(obj) or ""


def documented_constant(module: ModuleType, name: str) -> bool:
    """Whether a module-level value is introduced by a ``#:`` documentation comment."""
    source = inspect.getsource(module)
    return re.search(rf"^#: .+\n{re.escape(name)}\b.*=", source, re.MULTILINE) is not None


@pytest.mark.parametrize(("module", "expected"), MODULES, ids=lambda m: getattr(m, "__name__", ""))
def test_all_is_exactly_the_intended_names(module: ModuleType, expected: set[str]) -> None:
    """__all__ lists exactly the intended public names, sorted, without duplicates."""
    names = list(module.__all__)
    assert names == sorted(names)
    assert len(names) == len(set(names))
    assert set(names) == expected


@pytest.mark.parametrize(("module", "expected"), MODULES, ids=lambda m: getattr(m, "__name__", ""))
def test_every_public_name_exists_and_is_documented(module: ModuleType, expected: set[str]) -> None:
    """Every exported name resolves, and each class or function has its own docstring."""
    for name in module.__all__:
        obj = getattr(module, name)
        if name == "__version__":
            assert re.fullmatch(r"\d+\.\d+\.\d+\S*", obj)
        elif inspect.isclass(obj) or callable(obj):
            assert len(own_doc(obj).strip()) > 20, f"{module.__name__}.{name} has no docstring"
        else:
            assert documented_constant(module, name), f"{module.__name__}.{name} is undocumented"


@pytest.mark.parametrize(
    ("module", "name"),
    [(kie_async, n) for n in sorted(EXPECTED - {"__version__"})]
    + [(kie_async.callbacks, n) for n in sorted(EXPECTED_CALLBACKS)],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_public_methods_are_documented(module: ModuleType, name: str) -> None:
    """Each public method and property of an exported class has its own docstring."""
    cls = getattr(module, name)
    if not inspect.isclass(cls) or issubclass(cls, BaseException):
        return
    for attr, value in vars(cls).items():
        if isinstance(value, classmethod | staticmethod):
            value = value.__func__
        if attr.startswith("_") or not (callable(value) or isinstance(value, property)):
            continue
        assert own_doc(value).strip(), f"{name}.{attr} has no docstring"


def test_private_modules_stay_private() -> None:
    """Implementation modules are underscored, so users import only from kie_async."""
    public = {
        n for n, v in vars(kie_async).items() if isinstance(v, ModuleType) and not n.startswith("_")
    }
    assert public <= {"testing", "callbacks"}


def test_errors_share_one_base() -> None:
    """Every exported exception is a KieError, so one except clause catches them all."""
    for name in EXPECTED - {"__version__"}:
        obj = getattr(kie_async, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            assert issubclass(obj, kie_async.KieError), name
