"""A burst of deliveries arriving at once is answered: the receiver's listen backlog is large
by default (benchmarks/callback_burst.py measures 10,000; this is a scaled-down run)."""

from __future__ import annotations

import pytest
from burst import burst, start_receiver, stop_receiver

from kie_async import ConfigurationError
from kie_async.callbacks import CallbackReceiver


@pytest.mark.slow
async def test_a_burst_of_deliveries_at_once_is_all_answered() -> None:
    """2,000 signed deliveries opened at once to a receiver in another process are all answered
    200 and accepted once each."""
    process, url = await start_receiver()
    try:
        outcomes, _ = await burst(url, 2000)
    finally:
        counts = await stop_receiver(process)
    assert outcomes == {"200": 2000}
    assert counts["accepted"] == 2000


def test_the_backlog_is_large_by_default_and_configurable() -> None:
    """CallbackReceiver listens with a backlog of 65535 unless told otherwise; a bad one is a
    setup error."""
    assert CallbackReceiver(key="k").backlog == 65535
    assert CallbackReceiver(key="k", backlog=512).backlog == 512
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigurationError):
            CallbackReceiver(key="k", backlog=bad)  # type: ignore[arg-type]
