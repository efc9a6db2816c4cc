"""A budgeted run that learns a price (prices={key: "learn"}, --price KEY=learn:CEILING) from
the balance before and after its first create of it, proven on loopback with the fake server's
own prices and server-side create counts."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from kie_async import (
    BudgetExceededError,
    ConfigurationError,
    ExtendOutcome,
    ExtendRequest,
    KieClient,
    OutcomeKind,
    RateLimit,
    UpscaleRequest,
)
from kie_async._bulk.chains import BulkItem
from kie_async._cli import run
from kie_async.testing import FakeKieServer, TaskScript, fast_client

AUTO = "mj_video_extend_auto"


def extensions(count: int) -> list[BulkItem]:
    """``count`` automatic extensions (no prompt), each of its own source."""
    return [ExtendRequest(f"src{i}", 0) for i in range(count)]


async def collect(run: Any) -> list[ExtendOutcome[BulkItem]]:
    """Every outcome of a bulk run."""
    async with run:
        return [outcome async for outcome in run]


def calls(server: FakeKieServer) -> list[str]:
    """The server's requests in arrival order: ``"credit"``, ``"create"`` (any POST other
    than a download link) or ``"poll"``."""
    out = []
    for request in server.requests:
        if request.path.endswith("/chat/credit"):
            out.append("credit")
        elif request.method == "POST" and "download-url" not in request.path:
            out.append("create")
        else:
            out.append("poll")
    return out


async def test_a_learned_price_is_the_servers_and_the_budget_holds_with_it() -> None:
    """With the fake server charging 7 per extension, extend=learn:10 and a budget of 50, the
    run learns 7 (run.spend.learned), and makes exactly 50 // 7 creates, the learning one
    included (server count); the rest end NOT_SUBMITTED for the budget."""
    async with FakeKieServer(credits=1000, prices={"extend": 7}) as server:
        async with fast_client(server) as kie:
            run = kie.run_many(
                extensions(20), concurrency=8, max_credits=50, prices={"extend": "learn:10"}
            )
            outcomes = await collect(run)
        assert server.counts["create"] == 50 // 7
        assert run.spend is not None
        assert run.spend.learned == {AUTO: 7}
        assert run.spend.spent == 7 * server.counts["create"] == 1000 - server.credits
        held = [o for o in outcomes if o.kind is OutcomeKind.NOT_SUBMITTED]
        assert len(held) == 20 - 7
        assert all(isinstance(o.error, BudgetExceededError) for o in held)


async def test_no_create_goes_out_while_a_price_is_being_learned() -> None:
    """With a concurrency of 16 and upscales (price known) queued at the client's rate limit
    when the first extension needs its price learned, the learning create is the only create
    between the two balance reads: the upscales already reserved go out before it, every
    other create after the price is known; and a fractional price is learned exactly."""
    items: list[BulkItem] = [*(UpscaleRequest(f"img{i}", 1) for i in range(6)), *extensions(10)]
    prices = {"extend": "12.5", "upscale": 3}
    async with FakeKieServer(credits="900.75", prices=prices) as server:
        server.default_script = TaskScript(polls=1)
        async with fast_client(server, rate_limit=RateLimit(3, per=0.2)) as kie:
            run = kie.run_many(
                items,
                concurrency=16,
                max_credits=1000,
                prices={"extend": "learn:20", "upscale": 3},
            )
            outcomes = await collect(run)
        assert all(o.kind is OutcomeKind.SUCCEEDED for o in outcomes)
        assert run.spend is not None and run.spend.learned == {AUTO: Decimal("12.5")}
        assert server.counts["create"] == 16
        order = [
            (call, request) for call, request in zip(calls(server), server.requests, strict=True)
        ]
        order = [(call, request) for call, request in order if call != "poll"]
        extending = [
            i for i, (call, request) in enumerate(order)
            if call == "create" and request.json.get("taskType") == AUTO
        ]  # fmt: skip
        first = extending[0]
        # The learning create is alone between two balance reads: no other create (of any
        # kind) arrived between them, and every other extension came after the second.
        assert [call for call, _ in order[first - 1 : first + 2]] == ["credit", "create", "credit"]
        assert all(i > first + 1 for i in extending[1:])


async def test_a_balance_that_goes_up_stops_that_kind_and_not_the_others() -> None:
    """A top-up elsewhere during the learning create (the balance goes up) teaches nothing:
    that create's task is still awaited, every later extension ends NOT_SUBMITTED with a
    ConfigurationError saying so, and the upscales (priced) still go out."""
    async with FakeKieServer(credits=500, prices={"extend": 7, "upscale": 2}) as server:

        def top_up(body: Any) -> None:
            if body.get("taskType") == AUTO:
                server.credits += 100

        server.script_for = top_up
        items: list[BulkItem] = [*extensions(5), UpscaleRequest("img", 1), UpscaleRequest("i", 2)]
        async with fast_client(server) as kie:
            run = kie.run_many(
                items, concurrency=4, max_credits=1000, prices={"extend": "learn", "upscale": 2}
            )
            outcomes = await collect(run)
    assert server.counts["create:extend"] == 1
    assert server.counts["create:upscale"] == 2
    refused = [o for o in outcomes if o.kind is OutcomeKind.NOT_SUBMITTED]
    assert len(refused) == 4
    for outcome in refused:
        assert isinstance(outcome.error, ConfigurationError)
        assert "went up by 93" in str(outcome.error) and "--price mj_video_extend_auto=N" in str(
            outcome.error
        )
    learner = [o for o in outcomes if o.kind is OutcomeKind.SUCCEEDED and o.task_id]
    assert len(learner) == 3, "the learning create's task and both upscales are awaited"
    assert run.spend is not None and run.spend.learned == {}
    # The learning create's cost is unknown: it counts as the balance it could have taken.
    assert run.spend.spent == 500 + 2 * 2


async def test_a_lost_answer_on_the_learning_create_stops_that_kind(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """A learning create whose answer is lost (uncertain: maybe charged) teaches nothing: it is
    journaled uncertain, no further extension is created, each ends NOT_SUBMITTED naming the
    lost answer, and the spend counts the ceiling; a rerun on that journal with the price still
    marked "learn" refuses to start, naming the price to pass."""
    server.fail_next("create", "drop_after")
    journal = tmp_path / "run.jsonl"
    run = kie.extend_many(
        extensions(4),  # type: ignore[arg-type]
        concurrency=4,
        journal=journal,
        max_credits=500,
        prices={"extend": "learn:80"},
    )
    outcomes = await collect(run)
    assert server.counts["create"] == 1
    kinds = sorted(o.kind.value for o in outcomes)
    assert kinds == ["not_submitted"] * 3 + ["uncertain"]
    lost = [o for o in outcomes if o.kind is OutcomeKind.NOT_SUBMITTED]
    assert all("answer to its create was lost" in str(o.error) for o in lost)
    assert run.spend is not None and run.spend.spent == 80
    with pytest.raises(ConfigurationError, match="--price mj_video_extend_auto=N"):
        await collect(
            kie.extend_many(
                extensions(4), journal=journal, max_credits=500, prices={"extend": "learn"}
            )  # type: ignore[arg-type]
        )
    assert server.counts["create"] == 1


async def test_learning_needs_a_bound_the_budget_can_take(
    server: FakeKieServer, kie: KieClient
) -> None:
    """Plain "learn" bounds the create by the balance (100000 here): a budget of 500 cannot
    take that, so nothing is sent and every extension ends NOT_SUBMITTED with an upper-bound
    BudgetExceededError that says to give a ceiling; a ceiling of 100 fits."""
    run = kie.run_many(extensions(3), max_credits=500, prices={"extend": "learn"})
    outcomes = await collect(run)
    assert server.counts["create"] == 0
    assert all(o.kind is OutcomeKind.NOT_SUBMITTED for o in outcomes)
    for outcome in outcomes:
        error = outcome.error
        assert isinstance(error, BudgetExceededError) and error.upper_bound
        assert error.price == 100000 and "learn:CEILING" in str(error)
    run = kie.run_many(extensions(3), max_credits=500, prices={"extend": "learn:100"})
    outcomes = await collect(run)
    assert server.counts["create"] == 3
    assert run.spend is not None and run.spend.learned == {AUTO: 1}  # the server's task_cost


async def test_a_balance_that_does_not_move_teaches_nothing() -> None:
    """A create the server does not charge for (kie.ai charging later, say) leaves the balance
    where it was: the price is refused, not learned as 0."""
    async with FakeKieServer(prices={"extend": 0}) as server, fast_client(server) as kie:
        outcomes = await collect(
            kie.run_many(extensions(3), max_credits=50, prices={"extend": "learn:10"})
        )
    assert server.counts["create"] == 1
    refused = [o for o in outcomes if o.kind is OutcomeKind.NOT_SUBMITTED]
    assert len(refused) == 2 and "did not change" in str(refused[0].error)


async def test_learn_values_are_checked_and_the_dry_run_names_prices_to_learn(
    server: FakeKieServer, kie: KieClient
) -> None:
    """A ceiling that is not a positive number is refused before anything is sent; a dry run
    lists the prices it would learn and gives no total."""
    for bad in ("learn:0", "learn:x", "lern"):
        with pytest.raises(ConfigurationError, match="prices"):
            kie.run_many([], max_credits=10, prices={"extend": bad})
    items: list[BulkItem] = [*extensions(2), UpscaleRequest("img", 1)]
    plan = await kie.plan(items, prices={"extend": "learn", "upscale": 3}, max_credits=100)
    assert plan.learn_prices == {AUTO: None}
    assert plan.cost is None and plan.within_budget is None
    assert plan.to_json()["learn_prices"] == {AUTO: None}
    assert server.counts["create"] == 0


async def test_cli_learns_a_price_and_prints_it_in_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """bulk --max-credits 50 --price extend=learn:10 against a server charging 7 makes 7
    creates, and the summary says what was spent and the price to pass next time; its dry
    run says the cost is unknown until the price is learned."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"task_id": f"s{i}", "index": 0}) + "\n" for i in range(9)))
    async with FakeKieServer(credits=1000, prices={"extend": 7}) as server:
        monkeypatch.setenv("KIE_API_KEY", server.api_key)
        monkeypatch.setenv("KIE_POLL_ZERO_WAIT", "1")
        base = ["--base-url", server.url, "bulk", str(jobs), "--max-credits", "50"]
        code = await run([*base, "--price", "extend=learn:10", "--dry-run"])
        assert code == 0
        out = capsys.readouterr().out
        assert "unknown until the run learns the price of mj_video_extend_auto" in out
        assert "learn: mj_video_extend_auto from the balance" in out and "up to 10 credits" in out
        code = await run([*base, "--price", "extend=learn:10"])
        out = capsys.readouterr().out
        assert server.counts["create"] == 7
        assert code == 1  # two jobs held back for the budget
        assert "spent 49 of 50 credits; 1 left unspent" in out
        assert "--price mj_video_extend_auto=7" in out


async def test_a_rerun_reattaches_to_the_learning_create_at_the_price_passed(
    tmp_path: Path,
) -> None:
    """The learning create is journaled like any other, so a rerun on the journal with the
    learned price passed skips it (no second create) and counts it at that price."""
    journal = tmp_path / "run.jsonl"
    request = ExtendRequest("src0", 0)
    async with FakeKieServer(prices={"extend": 7}) as server, fast_client(server) as kie:
        first = kie.extend_many(
            [request], journal=journal, max_credits=50, prices={"extend": "learn:9"}
        )
        await collect(first)
        assert first.spend is not None and first.spend.learned == {AUTO: 7}
        rerun = kie.extend_many(
            [request, ExtendRequest("src1", 0)], journal=journal, max_credits=50, prices={AUTO: 7}
        )
        await collect(rerun)
        assert rerun.spend is not None and rerun.spend.journal == 7 and rerun.spend.run == 7
        assert server.counts["create"] == 2


async def test_a_price_above_the_ceiling_is_refused_and_counted_as_what_the_balance_fell() -> None:
    """A server charging 7 against a ceiling of 5: the balance fell by more than the create
    could cost, so nothing is learned, no further extension is sent, and the spend counts
    the 7 the balance fell by (not the 5 reserved)."""
    async with FakeKieServer(prices={"extend": 7}) as server, fast_client(server) as kie:
        run = kie.run_many(extensions(3), max_credits=50, prices={"extend": "learn:5"})
        outcomes = await collect(run)
    assert server.counts["create"] == 1
    refused = [o for o in outcomes if o.kind is OutcomeKind.NOT_SUBMITTED]
    assert len(refused) == 2 and "more than the 5 it could cost" in str(refused[0].error)
    assert run.spend is not None and run.spend.spent == 7 and run.spend.learned == {}


async def test_a_stop_while_the_price_is_measured_sends_nothing_more_and_keeps_the_task(
    tmp_path: Path,
) -> None:
    """The run is cancelled while it reads the balance after the learning create (a slow
    answer): it stops at once, sends no other create, and the learning create's task id is
    in the journal, so a rerun re-attaches to it."""
    journal = tmp_path / "run.jsonl"
    async with FakeKieServer(prices={"extend": 7}) as server:
        server.faults.slow_seconds = 30

        def slow_balance_next(body: Any) -> None:
            server.fail_next("credit", "slow")

        server.script_for = slow_balance_next
        async with fast_client(server) as kie:
            run = kie.extend_many(
                extensions(5),  # type: ignore[arg-type]
                concurrency=5,
                journal=journal,
                max_credits=50,
                prices={"extend": "learn:9"},
            )
            started = asyncio.get_running_loop().time()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(collect(run), 1.0)
            assert asyncio.get_running_loop().time() - started < 10
        assert server.counts["create"] == 1
        (task_id,) = server.tasks
        assert f'"task_id":"{task_id}"' in journal.read_text().replace(" ", "")
