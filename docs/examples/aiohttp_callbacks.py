"""An aiohttp service that extends videos and waits for them through kie.ai's callbacks.

Run it (kie.ai must reach PUBLIC_URL: a reverse proxy or a tunnel in front of port 8080)::

    export KIE_API_KEY=...  KIE_WEBHOOK_KEY=...  PUBLIC_URL=https://hooks.example.com/kie
    python aiohttp_callbacks.py ee603959 "Into a nebula" "Then a sunrise"

The receiver verifies each callback (signature, window, replays) and the client confirms
it with one ``record-info`` call before a wait returns; a slow safety poll covers a lost
one.
"""

from __future__ import annotations

import asyncio
import os
import sys

from kie_async import KieClient, TaskFailedError
from kie_async.callbacks import CallbackReceiver


async def main(source: str, prompts: list[str], port: int = 8080) -> int:
    """Extend ``source`` once per prompt, in parallel; print each result. Returns the
    number of failed tasks."""
    async with CallbackReceiver(key=os.environ["KIE_WEBHOOK_KEY"]) as receiver:
        await receiver.start(host="127.0.0.1", port=port, path="/kie")
        public_url = os.environ["PUBLIC_URL"]
        async with KieClient(callbacks=receiver, callback_url=public_url) as kie:
            handles = [await kie.extend_video(source, prompt=p) for p in prompts]
            failed = 0
            for handle in handles:
                try:
                    record = await handle  # ends when its callback is confirmed
                except TaskFailedError as exc:
                    failed += 1
                    print(handle.task_id, "failed:", exc.error_message)
                else:
                    print(handle.task_id, *record.result_urls)
            return failed


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    sys.exit(min(1, asyncio.run(main(sys.argv[1], sys.argv[2:], port))))
