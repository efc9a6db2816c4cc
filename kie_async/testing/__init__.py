"""A fake kie.ai to test against: a real aiohttp server on loopback that speaks kie's API.

It serves every Midjourney create (generate, upscale, vary, extend) with kie's documented
validation, ``record-info`` and callbacks for all of them, and the account endpoints. It behaves
like the real service as far as it is known, quirks included: errors inside HTTP 200
answers, result URLs as ``{"resultUrl": ...}`` objects, string timestamps in changing formats,
``"null"`` strings, ``{"code": 422, "msg": "recordInfo is null"}`` for unknown tasks, a bearer key
check, a 403 for library-default user agents, and a rate limit that *rejects* creates.
On top, tests can script how each task ends, inject faults, and read every request it got.
Its answers are built from plain dicts, never from kie_async's own models.

Example::

    from kie_async import KieClient
    from kie_async.testing import FakeKieServer, TaskScript, fast_client

    async def test_extension_succeeds():
        async with FakeKieServer() as server:
            server.script_next(TaskScript(polls=2))
            async with fast_client(server) as kie:
                handle = await kie.extend_video("src-1", index=0, prompt="Into the nebula")
                record = await handle
            assert len(record.result_urls) == 4
            assert server.counts["create"] == 1
"""

from __future__ import annotations

from .._public import publish as _publish

# The package, one module per concern: ``_scripts`` (TaskScript, RecordedRequest), ``_faults``,
# ``_kinds`` (each create's rules), ``_records`` (a task's raw record and callback body),
# ``_edge``, ``_store``, ``_endpoints``, ``_files`` and ``_callbacks`` (the server's parts, put
# together in ``_server``), ``_signing`` (sign_callback, and ``--send``), ``_fast``
# (fast_client) and ``_main`` (``python -m kie_async.testing``).
from . import _faults
from ._fast import fast_client
from ._faults import Faults
from ._main import main as main  # the standalone server, as before the package split
from ._scripts import DEFAULT_API_KEY as DEFAULT_API_KEY
from ._scripts import RecordedRequest, TaskScript
from ._server import FakeKieServer
from ._signing import sign_callback

__all__ = [
    "FAULT_KINDS",
    "FakeKieServer",
    "Faults",
    "RecordedRequest",
    "TaskScript",
    "fast_client",
    "sign_callback",
]

#: Every fault :class:`Faults` and :meth:`FakeKieServer.fail_next` know, by name.
FAULT_KINDS = _faults.FAULT_KINDS

# Each public name shows as kie_async.<this package>.Name in tracebacks, reprs and pickles.
for _name in __all__:
    _publish(globals()[_name], __name__)
