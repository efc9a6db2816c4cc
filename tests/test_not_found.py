"""A task kie.ai does not know ends with TaskNotFoundError, however record-info says so."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from kie_async import (
    ExtendRequest,
    OutcomeKind,
    PollPolicy,
    TaskNotFoundError,
    TaskStatus,
    UnexpectedResponseError,
)
from kie_async._protocol.envelope import CREDIT_PATH, RECORD_PATH, decipher
from kie_async.testing import FakeKieServer, TaskScript, fast_client

#: The two answers kie's backend gives an unknown task id (the fake server's ``unknown_task``).
ANSWERS = ["422", "null"]


def spaced(seconds: float, **settings: float) -> PollPolicy:
    """A policy polling every ``seconds`` with a 30-second grace unless ``settings`` say else."""
    values: dict[str, float] = {
        "interval": seconds,
        "factor": 1,
        "max_interval": seconds,
        "jitter": 0,
        "first_delay": 0,
        "not_found_grace": 30,
    }
    values.update(settings)
    return PollPolicy(**values)  # type: ignore[arg-type]


def test_data_null_from_record_info_is_task_not_found() -> None:
    """A success whose data is null is TaskNotFoundError from record-info, plain None elsewhere."""
    body = json.dumps({"code": 200, "msg": "success", "data": None}).encode()
    with pytest.raises(TaskNotFoundError) as info:
        decipher(200, {}, body, endpoint=RECORD_PATH)
    assert info.value.code == 200 and "data: null" in info.value.message
    assert decipher(200, {}, body, endpoint=CREDIT_PATH) is None
    # The code as a string takes the slower reading; it must agree.
    quoted = json.dumps({"code": "200", "msg": "success", "data": None}).encode()
    with pytest.raises(TaskNotFoundError):
        decipher(200, {}, quoted, endpoint=RECORD_PATH)


def test_a_success_without_data_is_not_taken_for_not_found() -> None:
    """An envelope with no data key at all is a broken answer, not a verdict on the task."""
    body = json.dumps({"code": 200, "msg": "success"}).encode()
    assert decipher(200, {}, body, endpoint=RECORD_PATH) is None


def test_the_fake_server_refuses_an_unknown_answer_style() -> None:
    """FakeKieServer(unknown_task=...) accepts only the answers kie was seen to give."""
    with pytest.raises(ValueError, match="unknown_task"):
        FakeKieServer(unknown_task="404")


@pytest.mark.parametrize("answer", ANSWERS)
async def test_get_task_of_an_unknown_id_is_task_not_found(answer: str) -> None:
    """get_task raises TaskNotFoundError after one call, for either answer."""
    async with FakeKieServer(unknown_task=answer) as server, fast_client(server) as kie:
        with pytest.raises(TaskNotFoundError):
            await kie.get_task("no-such-task")
        assert server.polls_for("no-such-task") == 1


@pytest.mark.parametrize("answer", ANSWERS)
async def test_waiting_for_an_unknown_id_ends_after_one_poll(answer: str) -> None:
    """kie.task(typo).wait() ends with TaskNotFoundError at its first poll, grace or not."""
    async with (
        FakeKieServer(unknown_task=answer) as server,
        fast_client(server, poll=spaced(0.05)) as kie,
    ):
        started = time.monotonic()
        with pytest.raises(TaskNotFoundError):
            await kie.task("typo-task-id").wait()
        assert time.monotonic() - started < 5
        assert server.polls_for("typo-task-id") == 1


@pytest.mark.parametrize("answer", ANSWERS)
async def test_a_fresh_task_is_believed_unknown_only_after_the_grace(answer: str) -> None:
    """A task created here that record-info does not know yet is polled through the grace,
    then ends with TaskNotFoundError: the same for both answers."""
    async with (
        FakeKieServer(unknown_task=answer) as server,
        fast_client(server, poll=spaced(0.02, not_found_grace=0.2)) as kie,
    ):
        started = time.monotonic()
        handle = await kie.extend_video("src", 0, "go")
        del server.tasks[handle.task_id]  # the record is gone: record-info does not know it
        with pytest.raises(TaskNotFoundError):
            await handle.wait(timeout=10)
        assert 0.2 - 1e-3 <= time.monotonic() - started < 5
        assert 2 <= server.polls_for(handle.task_id) <= 60


async def test_a_fresh_task_that_appears_within_the_grace_succeeds() -> None:
    """data: null for a moment after the create is not believed: the task appears, the wait
    succeeds."""
    async with (
        FakeKieServer(unknown_task="null") as server,
        fast_client(server, poll=spaced(0.02, not_found_grace=5)) as kie,
    ):
        handle = await kie.extend_video("src", 0, "go")
        task = server.tasks.pop(handle.task_id)
        waiting = asyncio.ensure_future(handle.wait(timeout=10))
        for _ in range(1000):  # bounded: 10 s at most
            if server.polls_for(handle.task_id) >= 3:
                break
            await asyncio.sleep(0.01)
        server.tasks[handle.task_id] = task
        record = await waiting
    assert record.status is TaskStatus.SUCCESS
    assert server.polls_for(handle.task_id) >= 4


@pytest.mark.parametrize("answer", ANSWERS)
async def test_a_bulk_rerun_re_attaching_to_unknown_tasks_fails_them_at_once(
    answer: str, tmp_path: Path
) -> None:
    """Journaled tasks that kie.ai no longer knows are failed with TaskNotFoundError after one
    poll each on the rerun, and nothing is created again."""
    journal = tmp_path / "run.jsonl"
    requests = [ExtendRequest("src", i, f"scene {i}") for i in range(3)]
    async with FakeKieServer(unknown_task=answer) as server:
        server.default_script = TaskScript(polls=10**6)
        async with fast_client(server, poll=PollPolicy.zero_wait(timeout=0.2)) as kie:
            first = [o async for o in kie.extend_many(requests, journal=journal)]
        assert all(o.kind is OutcomeKind.FAILED and o.task_id for o in first)
        server.tasks.clear()  # kie.ai forgot them (or the journal holds typos)
        before = {o.task_id: server.polls_for(o.task_id or "") for o in first}
        async with fast_client(server, poll=spaced(0.05)) as kie:
            second = [o async for o in kie.extend_many(requests, journal=journal)]
        assert server.counts["create"] == 3
        assert all(isinstance(o.error, TaskNotFoundError) for o in second)
        assert {o.task_id for o in second} == set(before)
        for task_id, polls in before.items():
            assert server.polls_for(task_id or "") - polls == 1


async def test_data_null_is_no_longer_an_unexpected_answer() -> None:
    """get_task never reports data: null as UnexpectedResponseError ("usually transient")."""
    async with FakeKieServer(unknown_task="null") as server, fast_client(server) as kie:
        with pytest.raises(TaskNotFoundError) as info:
            await kie.get_task("gone")
    assert not isinstance(info.value, UnexpectedResponseError)
