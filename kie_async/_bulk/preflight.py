"""The check before a run's first create: one cheap call, the account's balance, proves the key
and the host, so a typo'd key or a dead API ends a run of any size in seconds, with nothing sent
and one error instead of one per request. Bulk runs (:meth:`KieClient.run_many`,
:meth:`KieClient.extend_many`) and the ``kie-async bulk`` command call it; anything else about
to spend (a budget check, say) can call it too.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Protocol

from .._errors import NotFoundError

__all__ = ["Account", "check_account"]

log = logging.getLogger("kie_async")


class Account(Protocol):
    """What the check needs of a client (a :class:`~kie_async.KieClient` is one)."""

    @property
    def base_url(self) -> str: ...

    async def credits(self) -> Decimal:
        """The account's balance (see :meth:`KieClient.credits`)."""
        ...


async def check_account(client: Account) -> Decimal | None:
    """The account's balance, asked for before anything is paid for; ``None`` when the host has
    no balance endpoint (it answered 404: a host serving kie's API may keep it elsewhere), in
    which case the first create checks the key instead.

    The call is a read like any other: transient failures (429, 5xx, timeouts, dropped
    connections) are retried by the client's :class:`RetryPolicy`, and a host that refuses
    connections is given up after ``max_connect_retries`` (about 7 s with the defaults).

    Raises:
        AuthenticationError: the key was refused (401).
        TransportError: the host could not be reached, even after the retries.
        APIError, UnexpectedResponseError: any other failure, after the retries (an API that
            answers its cheapest call with errors would answer creates no better).
    """
    try:
        balance = await client.credits()
    except NotFoundError as exc:
        log.warning(
            "no balance at %s (%s): the key is checked by the first create instead",
            client.base_url,
            exc,
        )
        return None
    log.info("balance: %s credits at %s; key and host checked", balance, client.base_url)
    return balance
