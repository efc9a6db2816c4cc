"""kie_async: an asyncio SDK for kie.ai's Midjourney API: generate, upscale, vary, extend.

Example::

    from kie_async import KieClient

    async with KieClient() as kie:
        handle = await kie.extend_video("ee603959", index=0, prompt="Into a nebula")
        record = await handle
        print(record.status, record.result_urls)
"""

from ._bulk import BulkRun, ExtendOutcome, OutcomeKind, Progress
from ._chains import Chain, ExtendStep, UpscaleStep, VaryStep
from ._client import KieClient
from ._download import DownloadPolicy
from ._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    DownloadError,
    FeatureDisabledError,
    GenerationFailedError,
    InsufficientCreditsError,
    KieError,
    NotFoundError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    TaskNotFoundError,
    TransportError,
    UnexpectedResponseError,
    UnprocessableError,
    ValidationError,
)
from ._handle import TaskHandle
from ._logging import configure_from_env as _configure_logging
from ._models import TaskRecord, TaskStatus
from ._polling import PollPolicy, RetryPolicy
from ._ratelimit import RateLimit
from ._redis_limit import RedisRateLimit
from ._requests import (
    ExtendMode,
    ExtendRequest,
    GenerateRequest,
    TaskKind,
    UpscaleRequest,
    VaryRequest,
)
from ._task_errors import SubmissionUncertainError, TaskError, TaskFailedError, TaskTimeoutError
from ._timeout import Timeout
from ._version import __version__

__all__ = [
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
]

_configure_logging()
