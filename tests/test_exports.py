"""The public surface: exactly the intended names, sorted, each documented."""

from __future__ import annotations

import importlib
import inspect
import pickle
import re
import subprocess
import sys
import typing
from decimal import Decimal
from types import ModuleType

import attrs
import pytest

import kie_async
import kie_async.callbacks
import kie_async.callbacks.starlette
import kie_async.testing

EXPECTED = {
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "BulkRun",
    "Chain",
    "ClientClosedError",
    "ConfigurationError",
    "DEFAULT_PRICES",
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
    "JournalDownload",
    "JournalResults",
    "KieClient",
    "KieError",
    "NotFoundError",
    "OutcomeKind",
    "PollPolicy",
    "Progress",
    "RateLimit",
    "RateLimitError",
    "RedisRateLimit",
    "ResultFile",
    "RetryPolicy",
    "RunPlan",
    "ServerError",
    "ServiceUnavailableError",
    "Spend",
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
    "read_results",
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
    """Whether a module-level value is introduced by a ``#:`` documentation comment (in the
    package, or in the module its lazy ``_WHERE`` table names)."""
    source = inspect.getsource(module)
    where = getattr(module, "_WHERE", {}).get(name)
    if where is not None:
        source += inspect.getsource(importlib.import_module(f"{module.__name__}.{where}"))
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


# -- public names show where users import them ------------------------------------------------

PUBLISHED = [
    (kie_async, EXPECTED),
    (kie_async.callbacks, None),
    (kie_async.testing, EXPECTED_TESTING),
]


@pytest.mark.parametrize("module", [m for m, _ in PUBLISHED], ids=lambda m: m.__name__)
def test_public_names_say_their_public_module(module: ModuleType) -> None:
    """Every public class and function of kie_async, kie_async.callbacks and kie_async.testing
    has that package as ``__module__``, and its type hints still resolve (get_type_hints reads
    them in the ``__module__``'s namespace: hynek/svcs#52)."""
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__ == module.__name__, name
            typing.get_type_hints(obj)


def test_names_are_public_however_their_modules_were_first_imported() -> None:
    """In a fresh process that imports the private modules directly and never touches a public
    name, an error raised still shows as kie_async.TaskNotFoundError in its traceback, and the
    converter (which reads TaskRecord's type hints) still parses a record."""
    code = (
        "import traceback\n"
        "import kie_async._client, kie_async._bulk.run, kie_async._errors as e\n"
        "from kie_async._protocol.wire import parse_record\n"
        "assert parse_record({'taskId': 't', 'successFlag': 1}).success_flag == 1\n"
        "try:\n"
        "    raise e.TaskNotFoundError(code=422, message='recordInfo is null', http_status=200)\n"
        "except e.KieError:\n"
        "    print(traceback.format_exc().splitlines()[-1])\n"
        "print(repr(kie_async._client.KieClient), kie_async._bulk.run.BulkRun)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("kie_async.TaskNotFoundError: ")
    assert lines[1] == "<class 'kie_async.KieClient'> <class 'kie_async.BulkRun'>"


def some_errors() -> list[BaseException]:
    """One instance of every exception class kie_async exports, with its fields filled in."""
    request = kie_async.ExtendRequest("src", 0, "a prompt")
    record = kie_async.TaskRecord("t1", success_flag=2, error_message="nsfw")
    errors: list[BaseException] = [
        kie_async.KieError("anything"),
        kie_async.ValidationError("prompt", "is blank"),
        kie_async.ConfigurationError("api_key", "missing"),
        kie_async.ClientClosedError("closed"),
        kie_async.TransportError(message="reset", endpoint="/p", sent=False),
        kie_async.UnexpectedResponseError(message="not JSON", http_status=502, endpoint="/p"),
        kie_async.DownloadError(url="https://h/f.mp4", reason="short", path="f.mp4"),
        kie_async.SubmissionUncertainError(request=request, reason="lost"),
        kie_async.TaskError("t1", record),
        kie_async.TaskFailedError("t1", record, error_code="400", error_message="nsfw"),
        kie_async.TaskTimeoutError("t1", record, timeout=5.0),
        kie_async.BudgetExceededError(
            price=Decimal(60), spent=Decimal(120), max_credits=Decimal(150)
        ),
    ]
    for name in sorted(EXPECTED - {"__version__"}):
        cls = getattr(kie_async, name)
        if inspect.isclass(cls) and issubclass(cls, kie_async.APIError):
            errors.append(cls(code=404, message="m", http_status=404, endpoint="/p"))
    return errors


def test_every_error_class_pickles_by_its_public_name() -> None:
    """Each exported exception pickles as kie_async.Name and comes back equal in type, text
    and fields, in this process and in a fresh one (where kie_async resolves the name
    lazily)."""
    exported = {
        getattr(kie_async, name)
        for name in EXPECTED - {"__version__"}
        if inspect.isclass(getattr(kie_async, name))
        and issubclass(getattr(kie_async, name), BaseException)
    }
    errors = some_errors()
    assert {type(error) for error in errors} == exported
    for error in errors:
        data = pickle.dumps(error)
        assert b"kie_async" in data and b"kie_async._" not in data
        again = pickle.loads(data)
        assert type(again) is type(error)
        assert str(again) == str(error)
        if attrs.has(type(error)):
            for field in attrs.fields(type(error)):
                if field.name not in ("record", "request"):
                    assert getattr(again, field.name) == getattr(error, field.name), field.name
    code = (
        "import pickle, sys\n"
        "for error in pickle.loads(sys.stdin.buffer.read()):\n"
        "    print(type(error).__module__, type(error).__qualname__, error, sep='|')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=pickle.dumps(errors),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines() == [
        f"kie_async|{type(error).__qualname__}|{error}" for error in errors
    ]
