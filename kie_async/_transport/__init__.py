"""How it is sent: the session, the one aiohttp exchange, and the limiter of creates. It knows
nothing about tasks.

- ``config``: the client's settings checked (the key kept secret, the base URL, the pool)
- ``http``: reads under a size cap, pool slots within a time, aiohttp failures in words
- ``deadlines``: ``Timeout.total`` of API calls, one loop timer for every call in flight
- ``limiter``: the in-process limiter; ``redis_limiter``: the one shared through Redis
  (the only module that imports redis-py)
- ``exchange``: :class:`~kie_async._transport.exchange.Transport`, the one place aiohttp
  exceptions are translated, and the key's only holder
"""
