"""The README's Python examples, as written, for ``mypy --strict`` (only mypy reads this file).

Each example is the body of one function, indented; ``tests/test_project.py`` checks that every
``python`` block of the README appears here unchanged, so an example that stops type-checking
fails the type check, and one edited in the README alone fails the test.
"""

from __future__ import annotations


async def readme_quickstart() -> None:
    from kie_async import KieClient

    # The key comes from KIE_API_KEY, or pass KieClient(api_key=...).
    async with KieClient() as kie:
        handle = await kie.extend_video("ee603959-...", index=0,
                                        prompt="Continue the scene into a colorful nebula")
        record = await handle.wait()            # or simply: record = await handle
        print(record.status, record.result_urls)


async def readme_generate_then_extend() -> None:
    from kie_async import GenerateRequest, KieClient

    async with KieClient() as kie:
        request = GenerateRequest.video("a lighthouse in a storm", batch_size=2, motion="low",
                                        image_url="https://example.com/frame.png")
        source = await (await kie.generate(request)).wait()     # a TaskRecord with 2 videos
        longer = await (await kie.extend_video(source.task_id, index=1,
                                               prompt="the wave breaks")).wait()
        print(longer.result_urls)


async def readme_bulk_extension(source_ids: list[str]) -> None:
    from kie_async import ExtendRequest, KieClient

    requests = [ExtendRequest(source_id, index=0, prompt="The camera pulls back")
                for source_id in source_ids]

    async with KieClient() as kie:
        async for outcome in kie.extend_many(requests, concurrency=50,
                                             journal="extend.jsonl"):
            if outcome.ok:                              # the new task's id and its videos
                print(outcome.task_id, outcome.result.result_urls)
            else:                                       # failed, uncertain or not submitted
                print(outcome.request.describe(), outcome.kind.value, outcome.error)
