"""Shared fixtures: a fake kie.ai on loopback and clients that never sleep."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kie_async import KieClient, _retry
from kie_async.testing import FakeKieServer, fast_client


@pytest.fixture(name="server")
async def _server() -> AsyncIterator[FakeKieServer]:
    """A fresh fake kie.ai for one test."""
    async with FakeKieServer() as server:
        yield server


@pytest.fixture(name="kie")
async def _kie(server: FakeKieServer) -> AsyncIterator[KieClient]:
    """A zero-wait client for the fake server (no rate limit, no sleeping)."""
    async with fast_client(server) as client:
        yield client


@pytest.fixture(autouse=True, name="fresh_warnings")
def _fresh_warnings() -> None:
    """Each test starts with no host recently warned about as unreachable (``_retry``'s
    once-per-host warning would otherwise carry over between tests that reuse a port)."""
    _retry.warned_at.clear()


@pytest.fixture(autouse=True, name="no_env_key")
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see a real key or base URL from the developer's environment."""
    monkeypatch.delenv("KIE_API_KEY", raising=False)
    monkeypatch.delenv("KIE_BASE_URL", raising=False)
    monkeypatch.delenv("KIE_LOG", raising=False)
    monkeypatch.delenv("KIE_RATE_LIMIT_REDIS", raising=False)
    monkeypatch.delenv("KIE_POLL_ZERO_WAIT", raising=False)
