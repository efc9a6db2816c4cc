"""Spend only what you meant: the dry run (KieClient.plan, bulk --dry-run) and the budget
(max_credits), proven with server-side create counts on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers import child_env

from kie_async import (
    DEFAULT_PRICES,
    BudgetExceededError,
    Chain,
    ConfigurationError,
    ExtendOutcome,
    ExtendRequest,
    ExtendStep,
    GenerateRequest,
    KieClient,
    OutcomeKind,
    UpscaleRequest,
)
from kie_async._bulk.chains import BulkItem
from kie_async._bulk.journal import journal_key, request_json, step_key
from kie_async._cli import run
from kie_async.testing import FakeKieServer, Faults, TaskScript, fast_client

FRAME = "https://example.com/f.png"


def video(prompt: str) -> GenerateRequest:
    """A one-video generation (15 credits by default)."""
    return GenerateRequest.video(prompt, image_url=FRAME)


def line(event: str, key: str, **fields: Any) -> str:
    """One journal line, as a run writes it."""
    return json.dumps({"event": event, "key": key, "at": 0, **fields})


async def collect(run: Any) -> list[ExtendOutcome[BulkItem]]:
    """Every outcome of a bulk run."""
    async with run:
        return [outcome async for outcome in run]


def mixed_items() -> list[BulkItem]:
    """A jobs list of every kind, chains and a repeat, for the half-finished journal below."""
    done = ExtendRequest("src0", 0, "done")
    return [
        done,  # A: done
        ExtendRequest("src0", 1),  # B: running (auto)
        ExtendRequest("src0", 2, "lost"),  # C: uncertain (an intent, nothing after it)
        UpscaleRequest("img0", 2),  # D: refused last time: new
        video("new video"),  # E: new
        Chain(video("resumed"), ExtendStep(0, "one"), ExtendStep(0)),  # F: step 0 done
        Chain(video("fresh"), ExtendStep(0, "one"), ExtendStep(0)),  # G: new
        done,  # A again: its second occurrence is new
    ]


def half_finished_journal(path: Path, items: Sequence[BulkItem]) -> None:
    """The journal of a run stopped half-way through ``mixed_items()``."""
    a, b, c, d, _, f, *_ = items
    assert isinstance(a, ExtendRequest) and isinstance(b, ExtendRequest)
    assert isinstance(c, ExtendRequest) and isinstance(d, UpscaleRequest)
    assert isinstance(f, Chain)
    f0 = step_key(journal_key(f), 0)
    lines = [
        json.dumps({"journal": "kie-async", "version": 1}),
        line("intent", journal_key(a), request=request_json(a)),
        line("submitted", journal_key(a), task_id="t-a"),
        line("done", journal_key(a), task_id="t-a", status="succeeded", result_urls=["u"]),
        line("intent", journal_key(b), request=request_json(b)),
        line("submitted", journal_key(b), task_id="t-b"),
        line("intent", journal_key(c), request=request_json(c)),
        line("intent", journal_key(d), request=request_json(d)),
        line("refused", journal_key(d), error={"message": "422"}),
        line("intent", f0, request=request_json(f.first)),
        line("submitted", f0, task_id="t-f0"),
        line("done", f0, task_id="t-f0", status="succeeded", result_urls=["u"]),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


async def test_dry_run_prices_a_mixed_jobs_list_and_a_half_finished_journal(
    tmp_path: Path,
) -> None:
    """plan() sends no create (server count 0), classifies every job by the journal, and prices
    the creates left (chains step by step) and what the journal already spent."""
    items = mixed_items()
    journal = tmp_path / "run.jsonl"
    half_finished_journal(journal, items)
    before = journal.read_bytes()
    async with FakeKieServer(credits=1000) as server, fast_client(server) as kie:
        plan = await kie.plan(items, journal=journal, prices={"upscale": 5}, max_credits=500)
        assert server.counts["create"] == 0
        assert server.counts["poll"] == 0
    assert journal.read_bytes() == before, "a dry run neither locks nor writes the journal"
    assert plan.jobs == 8
    assert plan.kinds == {"extend": 4, "upscale": 1, "generate": 1, "chain": 2}
    assert (plan.chains, plan.chain_steps) == (2, 6)
    assert (plan.done, plan.running, plan.uncertain, plan.resumed, plan.new) == (1, 1, 1, 1, 4)
    # F's two extensions, G's two and A's repeat; E's and G's generations; D's upscale.
    assert plan.creates == {"extend": 5, "generate": 2, "upscale": 1}
    assert plan.cost_by_kind == {"extend": 300, "generate": 30, "upscale": 5}
    assert plan.cost == 335
    # A (60), B (60), C's intent (60, maybe sent), F's first step (15); D was refused.
    assert plan.journal_spent == 195
    assert plan.within_budget is False  # 195 + 335 > 500
    assert (plan.balance, plan.covers) == (1000, True)
    assert plan.missing_prices == ()
    assert "upscale" not in plan.default_prices and "mj_video:1" in plan.default_prices
    low, high = plan.seconds
    assert 0 < low < high
    assert plan.bound_by == "tasks in flight"


async def test_dry_run_names_missing_prices_and_counts_uncertain_when_resubmitting(
    kie: KieClient, server: FakeKieServer, tmp_path: Path
) -> None:
    """Without an upscale price the plan names it and gives no total; with resubmit_uncertain
    the uncertain create is priced as sent again."""
    items = mixed_items()
    journal = tmp_path / "run.jsonl"
    half_finished_journal(journal, items)
    plan = await kie.plan(items, journal=journal, resubmit_uncertain=True, balance=False)
    assert plan.missing_prices == ("upscale",)
    assert plan.cost is None and plan.balance is None and plan.covers is None
    assert plan.creates == {"extend": 6, "generate": 2, "upscale": 1}
    assert server.counts["create"] == 0


async def test_dry_run_binding_constraint_is_the_rate_limit_for_many_fast_creates(
    server: FakeKieServer,
) -> None:
    """With a slow rate limit and a large concurrency, the estimate names the rate limit."""
    from kie_async import RateLimit

    requests = [ExtendRequest(f"s{i}", 0) for i in range(2000)]
    async with fast_client(server, rate_limit=RateLimit(1, per=10)) as kie:
        plan = await kie.plan(requests, concurrency=2000, balance=False)
    assert plan.bound_by == "rate limit"
    assert plan.seconds[0] >= 2000 * 10


async def test_budget_caps_creates_across_concurrency_chains_retries_and_a_rerun(
    tmp_path: Path,
) -> None:
    """A budget of N credits at p per create makes at most N // p creates (server count),
    with concurrency, chains, 429s retried, lost answers counted as spent, and a rerun on the
    same journal; the requests held back end NOT_SUBMITTED with the reason "budget"."""
    price, budget = 7, 50
    prices = {"extend": price, "generate": price}
    items: list[BulkItem] = [ExtendRequest(f"s{i}", i % 4, f"p{i}") for i in range(20)]
    items += [Chain(video(f"c{i}"), ExtendStep(0, "a"), ExtendStep(0, "b")) for i in range(4)]
    journal = tmp_path / "run.jsonl"
    async with FakeKieServer(task_cost=price, seed=3) as server:
        server.faults = Faults(rate_limited=0.3, drop_after=0.1, endpoints={"create", "generate"})
        server.default_script = TaskScript(polls=1)
        async with fast_client(server) as kie:
            run = kie.run_many(
                items, concurrency=16, journal=journal, max_credits=budget, prices=prices
            )
            outcomes = await collect(run)
            spend = run.spend
        assert server.counts["create"] <= budget // price
        assert server.counts["fault:rate_limited"] > 0, "some creates were retried"
        assert spend is not None and spend.spent <= budget and spend.journal == 0
        assert spend.spent == price * server.counts["create"]
        held = [o for o in outcomes if isinstance(o.error, BudgetExceededError)]
        assert held and all(o.kind is OutcomeKind.NOT_SUBMITTED for o in held)
        assert all(o.error.reason == "budget" for o in held if o.error is not None)
        first = server.counts["create"]

        async with fast_client(server) as kie:
            rerun = kie.run_many(
                items, concurrency=16, journal=journal, max_credits=budget, prices=prices
            )
            await collect(rerun)
        assert server.counts["create"] <= budget // price, "the rerun counts the journal's spend"
        assert rerun.spend is not None and rerun.spend.journal == price * first

        async with fast_client(server) as kie:
            await collect(
                kie.run_many(items, journal=journal, max_credits=2 * budget, prices=prices)
            )
        assert server.counts["create"] <= 2 * budget // price


async def test_extend_many_budget_holds_back_creates_and_reports_the_spend(
    server: FakeKieServer, kie: KieClient
) -> None:
    """extend_many with the default extension price (60) and 150 credits sends two creates;
    the third is held back with a BudgetExceededError, and the spend says 120 spent, 30 left."""
    requests = [ExtendRequest("src", i, f"p{i}") for i in range(3)]
    run = kie.extend_many(requests, concurrency=1, max_credits=150)
    outcomes = await collect(run)
    assert server.counts["create"] == 2
    assert [o.kind for o in outcomes].count(OutcomeKind.NOT_SUBMITTED) == 1
    assert run.spend is not None
    assert (run.spend.spent, run.spend.left) == (120, 30)
    assert DEFAULT_PRICES["mj_video_extend_manual"] == 60


async def test_a_refused_create_gives_its_price_back(server: FakeKieServer, kie: KieClient) -> None:
    """A create kie.ai refuses (422) costs nothing: its reserved price is released."""
    server.answer_next("create", 422, "bad")
    run = kie.extend_many([ExtendRequest("src", 0, "x")], max_credits=60)
    outcomes = await collect(run)
    assert outcomes[0].kind is OutcomeKind.FAILED
    assert run.spend is not None and run.spend.spent == 0


async def test_a_missing_price_refuses_the_run_before_anything_is_sent(
    server: FakeKieServer, kie: KieClient, tmp_path: Path
) -> None:
    """A budgeted run with a create it has no price for (an upscale, a chain's vary step, or a
    paid create in the journal) raises ConfigurationError naming the price, and sends nothing."""
    requests: list[BulkItem] = [ExtendRequest("src", 0, "x"), UpscaleRequest("img", 1)]
    with pytest.raises(ConfigurationError, match="no price is known for upscale"):
        await collect(kie.run_many(requests, max_credits=1000))
    journal = tmp_path / "run.jsonl"
    upscale = UpscaleRequest("img", 1)
    journal.write_text(
        json.dumps({"journal": "kie-async", "version": 1})
        + "\n"
        + line("intent", journal_key(upscale), request=request_json(upscale))
        + "\n"
    )
    with pytest.raises(ConfigurationError, match="upscale"):
        await collect(kie.run_many([ExtendRequest("src", 0, "x")], journal=journal, max_credits=99))
    assert server.counts["create"] == 0
    with pytest.raises(ConfigurationError, match="unknown key 'extnd'"):
        kie.run_many([], max_credits=10, prices={"extnd": 60})
    with pytest.raises(ConfigurationError, match="max_credits"):
        kie.extend_many([], max_credits=-1)


async def test_402_still_stops_a_budgeted_run_at_once(server: FakeKieServer) -> None:
    """The fake server's balance runs out before the budget: 402 stops every later create."""
    async with FakeKieServer(credits=20, prices={"extend": 10}) as poor, fast_client(poor) as kie:
        requests = [ExtendRequest("src", i % 4, f"p{i}") for i in range(6)]
        outcomes = await collect(
            kie.extend_many(requests, concurrency=1, max_credits=1000, prices={"extend": 10})
        )
        assert poor.counts["create"] == 2
        assert [o.kind for o in outcomes].count(OutcomeKind.NOT_SUBMITTED) == 3
        assert await kie.credits() == 0


async def test_fake_server_charges_its_own_prices_and_the_balance_goes_down() -> None:
    """The fake server charges by taskType and batch, by kind, else task_cost, and its balance
    call reports what is left."""
    prices = {"mj_video:2": 30, "mj_video": 15, "upscale": 4}
    async with FakeKieServer(credits=100, prices=prices) as server, fast_client(server) as kie:
        await kie.generate(GenerateRequest.video("a", image_url=FRAME, batch_size=2))
        await kie.generate(video("b"))
        await kie.submit(UpscaleRequest("img", 0))
        await kie.submit(ExtendRequest("src", 0, "x"))  # no price: task_cost, 1
        assert await kie.credits() == Decimal(100 - 30 - 15 - 4 - 1)


_CLI = """
import asyncio, sys
from kie_async import PollPolicy
from kie_async._cli import run
poll = PollPolicy(interval=0.05, factor=1, max_interval=0.05, jitter=0, timeout=60, first_delay=0)
sys.exit(asyncio.run(run(sys.argv[1:], client_options={"poll": poll})))
"""


@pytest.mark.slow
async def test_cli_budget_survives_sigkill_and_rerun(tmp_path: Path) -> None:
    """kie-async bulk --max-credits 150 --price extend=10, SIGKILLed mid-run and rerun on the
    same journal, makes at most 15 creates in all (server count), and the rerun's summary says
    what was spent."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"task_id": f"s{i}", "index": 0}) + "\n" for i in range(40)))
    journal = tmp_path / "run.jsonl"
    args = ["bulk", str(jobs), "--journal", str(journal), "--rate-limit", "4/1"]
    args += ["--max-credits", "150", "--price", "extend=10", "--concurrency", "40"]
    async with FakeKieServer(task_cost=10) as server:
        server.default_script = TaskScript(seconds=0.3)
        env = child_env(KIE_API_KEY=server.api_key, KIE_BASE_URL=server.url)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CLI, *args, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            if journal.exists() and journal.read_text().count('"event":"submitted"') >= 5:
                break
        os.kill(process.pid, signal.SIGKILL)
        await process.wait()
        killed = server.counts["create"]
        assert 5 <= killed < 15, "the kill should land mid-run"

        rerun = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CLI, *args, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(rerun.communicate(), 60)
        assert rerun.returncode == 1, err.decode()  # jobs held back: not every job succeeded
        assert server.counts["create"] <= 15
        assert server.duplicate_creates() == 0
        assert "of 150 credits" in out.decode() and "left unspent" in out.decode()
        assert "not sent (budget)" in out.decode()


async def test_cli_dry_run_sends_nothing_and_prints_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """bulk --dry-run --json reads the jobs and the balance and creates nothing; a budgeted
    run missing a price exits 2 before any create."""
    jobs = tmp_path / "jobs.jsonl"
    lines = [
        {"task_id": "s0", "index": 0, "prompt": "go"},
        {"kind": "upscale", "task_id": "img", "index": 1},
    ]
    jobs.write_text("".join(json.dumps(item) + "\n" for item in lines))
    async with FakeKieServer(credits=500) as server:
        monkeypatch.setenv("KIE_API_KEY", server.api_key)
        base = ["--base-url", server.url, "bulk", str(jobs)]
        code = await run([*base, "--dry-run", "--json", "--price", "upscale=5"])
        assert code == 0
        report = json.loads(capsys.readouterr().out)
        assert report["cost"] == 65 and report["balance"] == 500 and report["covers"] is True
        code = await run([*base, "--dry-run"])
        assert code == 0
        assert "no price for upscale" in capsys.readouterr().out
        code = await run([*base, "--max-credits", "100"])
        assert code == 2
        assert "--price upscale=N" in capsys.readouterr().err
        assert server.counts["create"] == 0
