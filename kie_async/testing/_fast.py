"""fast_client: a KieClient for a fake server that never sleeps.

The one module of :mod:`kie_async.testing` that uses the SDK itself (the server never does).
"""

from __future__ import annotations

from typing import Any

from .._client import KieClient
from .._policies import DownloadPolicy, PollPolicy, RetryPolicy
from ._server import FakeKieServer


def fast_client(server: FakeKieServer, **kwargs: Any) -> KieClient:
    """A :class:`KieClient` for ``server`` that never sleeps: zero-wait polling and retries,
    no client-side rate limit, short timeouts. Keyword arguments override any setting.

    Zero-wait polling suits tasks scripted to end after a number of polls; for tasks that end
    after some seconds pass ``poll=PollPolicy.testing()`` (at most 10 polls a second per task).

    Example::

        async with FakeKieServer() as server, fast_client(server) as kie:
            record = await (await kie.extend_video("src", prompt="go"))
    """
    settings: dict[str, Any] = {
        "api_key": server.api_key,
        "base_url": server.url,
        "poll": PollPolicy.zero_wait(),
        "retry": RetryPolicy.zero_wait(),
        "rate_limit": None,
        "timeout": 5.0,
        "connect_timeout": 5.0,
        "download": DownloadPolicy(read_timeout=5.0),
    }
    settings.update(kwargs)
    return KieClient(**settings)
