"""kie_async: an asyncio SDK for kie.ai's Midjourney API: generate, upscale, vary, extend.

Example::

    from kie_async import KieClient

    async with KieClient() as kie:
        handle = await kie.extend_video("ee603959", index=0, prompt="Into a nebula")
        record = await handle
        print(record.status, record.result_urls)
"""

import sys as _sys
import types as _types
from typing import TYPE_CHECKING

from ._public import publish as _publish
from ._text import configure_from_env as _configure_logging
from ._version import __version__ as __version__

if TYPE_CHECKING:
    from ._bulk.budget import Spend as Spend
    from ._bulk.chains import Chain as Chain
    from ._bulk.chains import ExtendStep as ExtendStep
    from ._bulk.chains import UpscaleStep as UpscaleStep
    from ._bulk.chains import VaryStep as VaryStep
    from ._bulk.outcomes import ExtendOutcome as ExtendOutcome
    from ._bulk.outcomes import OutcomeKind as OutcomeKind
    from ._bulk.outcomes import Progress as Progress
    from ._bulk.plan import RunPlan as RunPlan
    from ._bulk.prices import DEFAULT_PRICES as DEFAULT_PRICES
    from ._bulk.results import JournalResults as JournalResults
    from ._bulk.results import ResultFile as ResultFile
    from ._bulk.results import read_results as read_results
    from ._bulk.results_download import JournalDownload as JournalDownload
    from ._bulk.run import BulkRun as BulkRun
    from ._client import KieClient as KieClient
    from ._errors import APIError as APIError
    from ._errors import AuthenticationError as AuthenticationError
    from ._errors import BadRequestError as BadRequestError
    from ._errors import BudgetExceededError as BudgetExceededError
    from ._errors import ClientClosedError as ClientClosedError
    from ._errors import ConfigurationError as ConfigurationError
    from ._errors import DownloadError as DownloadError
    from ._errors import FeatureDisabledError as FeatureDisabledError
    from ._errors import GenerationFailedError as GenerationFailedError
    from ._errors import InsufficientCreditsError as InsufficientCreditsError
    from ._errors import KieError as KieError
    from ._errors import NotFoundError as NotFoundError
    from ._errors import RateLimitError as RateLimitError
    from ._errors import ServerError as ServerError
    from ._errors import ServiceUnavailableError as ServiceUnavailableError
    from ._errors import TaskNotFoundError as TaskNotFoundError
    from ._errors import TransportError as TransportError
    from ._errors import UnexpectedResponseError as UnexpectedResponseError
    from ._errors import UnprocessableError as UnprocessableError
    from ._errors import ValidationError as ValidationError
    from ._kinds.common import TaskKind as TaskKind
    from ._kinds.extend import ExtendMode as ExtendMode
    from ._kinds.extend import ExtendRequest as ExtendRequest
    from ._kinds.generate import GenerateRequest as GenerateRequest
    from ._kinds.image_actions import UpscaleRequest as UpscaleRequest
    from ._kinds.image_actions import VaryRequest as VaryRequest
    from ._policies import DownloadPolicy as DownloadPolicy
    from ._policies import PollPolicy as PollPolicy
    from ._policies import RateLimit as RateLimit
    from ._policies import RedisRateLimit as RedisRateLimit
    from ._policies import RetryPolicy as RetryPolicy
    from ._policies import Timeout as Timeout
    from ._protocol.records import TaskRecord as TaskRecord
    from ._protocol.records import TaskStatus as TaskStatus
    from ._tasks.errors import SubmissionUncertainError as SubmissionUncertainError
    from ._tasks.errors import TaskError as TaskError
    from ._tasks.errors import TaskFailedError as TaskFailedError
    from ._tasks.errors import TaskTimeoutError as TaskTimeoutError
    from ._tasks.handle import TaskHandle as TaskHandle


# The public names, once: each with the module that defines it. Each is imported from there when
# first used: ``import kie_async`` (and the ``kie-async`` command's ``--help``) then costs no
# aiohttp, whose import takes most of a second. Type checkers read the imports above instead;
# ``tests/test_layout.py`` checks that they name the same names and modules.
_WHERE = {
    "DEFAULT_PRICES": "_bulk.prices",
    "APIError": "_errors",
    "AuthenticationError": "_errors",
    "BadRequestError": "_errors",
    "BudgetExceededError": "_errors",
    "BulkRun": "_bulk.run",
    "Chain": "_bulk.chains",
    "ClientClosedError": "_errors",
    "ConfigurationError": "_errors",
    "DownloadError": "_errors",
    "DownloadPolicy": "_policies",
    "ExtendMode": "_kinds.extend",
    "ExtendOutcome": "_bulk.outcomes",
    "ExtendRequest": "_kinds.extend",
    "ExtendStep": "_bulk.chains",
    "FeatureDisabledError": "_errors",
    "GenerateRequest": "_kinds.generate",
    "GenerationFailedError": "_errors",
    "InsufficientCreditsError": "_errors",
    "JournalDownload": "_bulk.results_download",
    "JournalResults": "_bulk.results",
    "KieClient": "_client",
    "KieError": "_errors",
    "NotFoundError": "_errors",
    "OutcomeKind": "_bulk.outcomes",
    "PollPolicy": "_policies",
    "Progress": "_bulk.outcomes",
    "RateLimit": "_policies",
    "RateLimitError": "_errors",
    "RedisRateLimit": "_policies",
    "ResultFile": "_bulk.results",
    "RetryPolicy": "_policies",
    "RunPlan": "_bulk.plan",
    "ServerError": "_errors",
    "ServiceUnavailableError": "_errors",
    "Spend": "_bulk.budget",
    "SubmissionUncertainError": "_tasks.errors",
    "TaskError": "_tasks.errors",
    "TaskFailedError": "_tasks.errors",
    "TaskHandle": "_tasks.handle",
    "TaskKind": "_kinds.common",
    "TaskNotFoundError": "_errors",
    "TaskRecord": "_protocol.records",
    "TaskStatus": "_protocol.records",
    "TaskTimeoutError": "_tasks.errors",
    "Timeout": "_policies",
    "TransportError": "_errors",
    "UnexpectedResponseError": "_errors",
    "UnprocessableError": "_errors",
    "UpscaleRequest": "_kinds.image_actions",
    "UpscaleStep": "_bulk.chains",
    "ValidationError": "_errors",
    "VaryRequest": "_kinds.image_actions",
    "VaryStep": "_bulk.chains",
    "read_results": "_bulk.results",
}

__all__ = sorted(["__version__", *_WHERE])


class _Package(_types.ModuleType):
    """This package, and each of its folders: as a module is loaded (the import system then
    sets it as an attribute of its package), the public names it defines in :data:`_WHERE` are
    published as ``kie_async.Name`` (:func:`~kie_async._public.publish`), before anything can
    raise them, whoever imported the module first."""

    def __setattr__(self, name: str, value: object) -> None:
        super().__setattr__(name, value)
        if isinstance(value, _types.ModuleType) and value.__name__ == f"{self.__name__}.{name}":
            if type(value) is _types.ModuleType:
                value.__class__ = _Package  # a folder's own modules are published as they load
            for public, module in _WHERE.items():  # the module, or those its folder loaded
                loaded = _sys.modules.get(f"{__name__}.{module}")
                if loaded is not None and f"{loaded.__name__}.".startswith(f"{value.__name__}."):
                    _publish(getattr(loaded, public), __name__)


_sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


_configure_logging()
