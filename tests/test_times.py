"""Times a user can compare: every datetime the SDK returns or writes is timezone-aware.

kie.ai writes times as ISO 8601 with a zone, as epoch milliseconds, and as zone-less
``"2026-01-06 08:17:04"`` strings that the one real answer on file shows to be UTC+8
(``/work/shared/real-samples``, O16). These tests hold the SDK to one reading of each, in UTC,
through both record parsers, the journal, the results file and the command's output.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kie_async import ExtendRequest, PollPolicy, RetryPolicy, TaskRecord
from kie_async._cli import run
from kie_async._protocol.records import UTC_PLUS_8, parse_time
from kie_async._protocol.wire import parse_record
from kie_async.testing import FakeKieServer, TaskScript, fast_client

KEY = "test-key"
UTC = timezone.utc

#: The instants a task can carry: from 2001 (10-digit epoch seconds) to 2200, to the second.
instants = st.datetimes(
    min_value=datetime(2001, 9, 10), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda when: when.replace(microsecond=0))


def zoneless(when: datetime) -> str:
    """``when`` as kie writes it without a zone: its wall clock at UTC+8."""
    return when.astimezone(UTC_PLUS_8).strftime("%Y-%m-%d %H:%M:%S")


def the_forms(when: datetime) -> list[object]:
    """Every form kie.ai has used for one instant."""
    millis = int(when.timestamp()) * 1000
    return [
        when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        when.astimezone(UTC_PLUS_8).isoformat(),
        zoneless(when),
        zoneless(when).replace("-", "/"),
        str(millis),
        millis,
        str(millis // 1000),
    ]


@pytest.fixture(name="server")
async def _server() -> AsyncIterator[FakeKieServer]:
    """A fake kie.ai with the default key."""
    async with FakeKieServer() as server:
        yield server


def test_the_real_zoneless_time_is_utc_plus_8() -> None:
    """O16's completeTime "2026-01-06 08:17:04" is the instant its result file is named after
    (epoch ms 1767658623526), to the second: zone-less kie times are UTC+8."""
    real = json.loads(
        '{"taskId": "933259930a1fc855a4e3835b7c60a028", "successFlag": 1,'
        ' "completeTime": "2026-01-06 08:17:04", "createTime": "2026-01-06 08:16:56"}'
    )
    record = parse_record(real)
    named_after = datetime.fromtimestamp(1767658623526 / 1000, UTC)
    assert record.completed_at is not None
    assert abs(record.completed_at - named_after) < timedelta(seconds=1)
    assert record.completed_at == datetime(2026, 1, 6, 0, 17, 4, tzinfo=UTC)
    assert record.created_at == datetime(2026, 1, 6, 0, 16, 56, tzinfo=UTC)
    assert record.completed_at_raw == "2026-01-06 08:17:04"
    assert record.data["completeTime"] == "2026-01-06 08:17:04"


@given(when=instants)
def test_every_form_of_one_instant_reads_as_that_instant_in_utc(when: datetime) -> None:
    """ISO with Z or +08:00, zone-less UTC+8 (dashes or slashes), epoch ms as text or number and
    epoch seconds all give the same aware UTC datetime, through the record parser."""
    for form in the_forms(when):
        record = parse_record({"taskId": "t", "successFlag": 1, "createTime": form})
        assert record.created_at == when, form
        assert record.created_at.tzinfo is UTC, form


@given(
    raw=st.one_of(
        st.text(max_size=30),
        st.sampled_from(["0001-01-01 00:00:00", "9999-12-31T23:59:59-14:00", "2026-01-06"]),
        st.integers(),
        st.floats(allow_nan=True),
        st.none(),
        st.booleans(),
    )
)
def test_any_time_field_gives_an_aware_time_or_none_and_never_fails(raw: object) -> None:
    """Whatever kie.ai puts in a time field, the record is built, and its time is None or an
    aware UTC datetime; the raw value stays in data."""
    record = parse_record({"taskId": "t", "successFlag": 0, "createTime": raw, "completeTime": raw})
    for when in (record.created_at, record.completed_at):
        assert when is None or when.tzinfo is UTC
    assert record.data["createTime"] is raw


def test_epoch_numbers_below_10_to_the_11_are_seconds_and_above_are_milliseconds() -> None:
    """Epoch numbers below 10**11 are seconds, from 10**11 on milliseconds, both UTC."""
    assert parse_time("1767658623") == datetime(2026, 1, 6, 0, 17, 3, tzinfo=UTC)
    assert parse_time("1767658623526") == datetime(2026, 1, 6, 0, 17, 3, 526000, tzinfo=UTC)
    assert parse_time("99999999999") == datetime(5138, 11, 16, 9, 46, 39, tzinfo=UTC)
    assert parse_time("100000000000") == datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC)
    assert parse_time("١٧٦٧٦٥٨٦٢٣") is None  # not ASCII digits: not an epoch number


def test_times_of_both_forms_compare() -> None:
    """A zone-less time and an ISO one of the same second compare, and are equal (the bug:
    comparing them raised TypeError)."""
    iso = TaskRecord("a", created_at_raw="2026-01-06T00:17:04Z")
    plain = TaskRecord("b", created_at_raw="2026-01-06 08:17:04")
    assert iso.created_at is not None and plain.created_at is not None
    assert iso.created_at == plain.created_at
    assert not iso.created_at < plain.created_at


async def test_tasks_of_the_fake_server_in_both_forms_sort_by_time(
    server: FakeKieServer,
) -> None:
    """The fake server answers in both forms (odd tasks zone-less): records of tasks created
    together have aware times, within a few seconds of now, that sort without error."""
    before = datetime.now(UTC) - timedelta(seconds=2)
    async with fast_client(server) as kie:
        records = [await (await kie.extend_video("src", index=i, prompt="p")) for i in range(4)]
    raws = {record.created_at_raw[10:11] for record in records if record.created_at_raw}
    assert raws == {"T", " "}  # both forms were served
    times = sorted(record.created_at for record in records if record.created_at)
    assert len(times) == 4
    assert all(before <= when <= datetime.now(UTC) + timedelta(seconds=2) for when in times)


async def test_records_from_a_journal_have_aware_times(
    server: FakeKieServer, tmp_path: Path
) -> None:
    """A rerun reads its records back from the journal, with the same aware times."""
    journal = tmp_path / "run.jsonl"
    requests = [ExtendRequest("src", i, f"scene {i}") for i in range(4)]
    async with fast_client(server) as kie:
        first = [o async for o in kie.extend_many(requests, journal=journal)]
        again = [o async for o in kie.extend_many(requests, journal=journal)]
    assert all(o.from_journal for o in again)
    original = {o.request.fingerprint(): o.record for o in first}
    for outcome in again:
        assert outcome.record is not None and outcome.record.created_at is not None
        assert outcome.record.created_at.tzinfo is UTC
        before = original[outcome.request.fingerprint()]
        assert before is not None and outcome.record.created_at == before.created_at


async def test_results_file_and_status_output_write_aware_utc_times(
    server: FakeKieServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """results.jsonl holds every time as ISO 8601 with the +00:00 offset whatever form kie
    sent, and `status` prints the same; the raw strings are not mixed in."""
    monkeypatch.setenv("KIE_API_KEY", KEY)
    jobs = tmp_path / "jobs.jsonl"
    lines = [json.dumps({"task_id": "src", "index": i, "prompt": "p"}) for i in range(4)]
    jobs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "results.jsonl"
    options: dict[str, Any] = {"poll": PollPolicy.zero_wait(), "retry": RetryPolicy.zero_wait()}
    argv = ["--base-url", server.url, "bulk", str(jobs), "--out", str(out)]
    assert await run(argv, client_options=options) == 0
    results = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(results) == 4
    for result in results:
        for field in ("created_at", "completed_at"):
            when = datetime.fromisoformat(result[field])
            assert result[field].endswith("+00:00") and when.tzinfo is not None
    server.script_next(TaskScript(polls=3))
    capsys.readouterr()
    async with fast_client(server) as kie:
        odd = [(await kie.extend_video("src", index=0, prompt="p")).task_id for _ in range(2)]
    for task_id in odd:
        assert await run(["--base-url", server.url, "status", task_id]) == 0
        created = next(
            line for line in capsys.readouterr().out.splitlines() if line.startswith("created:")
        )
        assert created.endswith("+00:00"), created
