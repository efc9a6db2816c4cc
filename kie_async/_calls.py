"""The calls of :class:`~kie_async.KieClient` that build a request, or hand the client to a
layer below: one method per task kind (each builds its request and submits it), downloads and
bulk runs. :class:`KieClient` inherits them, so they are its methods and are documented there;
each names what it needs of the client with a Protocol (``self: FileSource``...), so this module
does not import the client. Its settings, wiring and lifecycle live in ``_client.py``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ._download.fetch import FileSource
from ._errors import ValidationError
from ._kinds.registry import (
    ExtendMode,
    ExtendRequest,
    GenerateRequest,
    TaskRequest,
    UpscaleRequest,
    VaryRequest,
    image_action,
)
from ._policies import PollPolicy
from ._protocol.records import TaskRecord
from ._tasks.handle import TaskHandle

if TYPE_CHECKING:
    from ._bulk.chains import BulkItem
    from ._bulk.plan import PlanSource, RunPlan
    from ._bulk.results_download import JournalDownload, JournalSource
    from ._bulk.run import BulkClient, BulkRun, Progress
    from .callbacks import CallbackEvent, CallbackReceiver

__all__ = ["KindCalls", "RunCalls"]


def _path(name: str, value: object) -> Path:
    """``value`` as a :class:`~pathlib.Path`, or a :class:`ValidationError` naming ``name``
    for anything that is not a ``str`` or ``os.PathLike[str]`` (``None``, a number, bytes)."""
    if isinstance(value, str | os.PathLike):
        try:
            return Path(value)
        except TypeError:
            pass  # an os.PathLike[bytes]
    raise ValidationError(name, f"must be a path (str or os.PathLike), got {type(value).__name__}")


class _Submits(Protocol):
    async def submit(self, request: TaskRequest) -> TaskHandle: ...


class KindCalls:
    """One method per task kind: build its request (validated before anything is sent) and
    :meth:`~kie_async.KieClient.submit` it. A new kind adds its method here."""

    async def extend_video(
        self: _Submits,
        task_id: str,
        index: int = 0,
        prompt: str | None = None,
        *,
        mode: ExtendMode | str | None = None,
        watermark: str | None = None,
        callback_url: str | None = None,
    ) -> TaskHandle:
        """Extend one video of a Midjourney video record; returns the new task's handle.

        Manual mode (your ``prompt`` says what happens next) when a prompt is given, auto mode
        (the model continues) otherwise; ``mode`` overrides. Input is validated before anything
        is sent.

        Raises:
            ValidationError: an argument is invalid (nothing was sent).
            SubmissionUncertainError, APIError, TransportError: see :meth:`submit`.

        Example::

            handle = await kie.extend_video("ee603959", index=0, prompt="Into a nebula")
            record = await handle.wait()
        """
        request = ExtendRequest(
            task_id, index, prompt, mode=mode, watermark=watermark, callback_url=callback_url
        )
        return await self.submit(request)

    async def generate(self: _Submits, request: GenerateRequest) -> TaskHandle:
        """Start a Midjourney generation (images, or a video from an image); returns the new
        task's handle. Build the request with :meth:`GenerateRequest.image`,
        :meth:`~GenerateRequest.video` and the other constructors.

        Raises:
            TypeError: ``request`` is not a :class:`GenerateRequest`.
            SubmissionUncertainError, APIError, TransportError: see :meth:`submit`.

        Example::

            handle = await kie.generate(GenerateRequest.image("a lighthouse in a storm"))
            record = await handle           # record.result_urls: 4 images
        """
        if not isinstance(request, GenerateRequest):
            raise TypeError(f"generate() takes a GenerateRequest, not {type(request).__name__}")
        return await self.submit(request)

    async def upscale(
        self: _Submits,
        task_id: str | UpscaleRequest,
        index: int | None = None,
        *,
        watermark: str | None = None,
        callback_url: str | None = None,
    ) -> TaskHandle:
        """Upscale image ``index`` (0-3) of an image task; returns the new task's handle.
        Pass an :class:`UpscaleRequest` instead of ``task_id`` and ``index`` if you have one.

        Raises:
            ValidationError: an argument is invalid (nothing was sent).
            SubmissionUncertainError, APIError, TransportError: see :meth:`submit`.

        Example::

            record = await (await kie.upscale(image_task_id, index=2)).wait()
        """
        return await self.submit(
            image_action(UpscaleRequest, task_id, index, watermark, callback_url)
        )

    async def vary(
        self: _Submits,
        task_id: str | VaryRequest,
        index: int | None = None,
        *,
        watermark: str | None = None,
        callback_url: str | None = None,
    ) -> TaskHandle:
        """Make variations of image ``index`` (0-3) of an image task; returns the new task's
        handle. Pass a :class:`VaryRequest` instead of ``task_id`` and ``index`` if you have
        one.

        Raises:
            ValidationError: an argument is invalid (nothing was sent).
            SubmissionUncertainError, APIError, TransportError: see :meth:`submit`.

        Example::

            record = await (await kie.vary(image_task_id, index=0)).wait()
        """
        request = image_action(VaryRequest, task_id, index, watermark, callback_url)
        return await self.submit(request)


class _Confirms(Protocol):
    async def get_task(self, task_id: str) -> TaskRecord: ...

    @property
    def callbacks(self) -> CallbackReceiver | None: ...


class RunCalls:
    """Downloads and bulk runs: the client handed to :mod:`~kie_async._download.fetch` and
    :mod:`~kie_async._bulk.run`, which need only what their Protocols name."""

    async def confirm(self: _Confirms, event: CallbackEvent) -> TaskRecord:
        """What ``record-info`` says of a callback's task: one read that decides, since the
        signature covers only the task id and the time, never the body's result or outcome.

        Returns the current :class:`TaskRecord`, final or not: an acknowledgment (or a body
        ahead of ``record-info``) may find the task still generating; wait for it with
        ``await kie.task(event.task_id)``. Trust the record's ``result_urls`` and ``status``,
        not the event's. With a receiver attached, a final record is kept on its event too.

        Raises:
            TaskNotFoundError: kie.ai knows no such task (a forged or foreign callback).
            APIError, TransportError, UnexpectedResponseError: the call failed.

        Example::

            event = verify_callback(body, headers, key=webhook_key)
            record = await kie.confirm(event)
            if record.status.ok:
                await kie.download(record, "videos/")
        """
        record = await self.get_task(event.task_id)
        receiver = self.callbacks
        if receiver is not None and record.status.is_terminal:
            receiver._confirm(record)
        return record

    async def download(
        self: FileSource,
        record: TaskRecord,
        dest_dir: str | os.PathLike[str],
        *,
        concurrency: int = 4,
    ) -> list[Path]:
        """Save a finished task's result files in ``dest_dir``; returns their paths in order.

        Each file is named ``<task_id>_<i>.<ext>`` (``i`` its position in
        ``record.result_urls``, the extension from the URL, ``.mp4`` by default; an id that is
        not a safe file name as it is gets a short hash, so distinct ids never share a file)
        and streamed to a temporary file in the same directory (created exclusively, never
        through a symlink; written off the event loop), checked against ``Content-Length``,
        then renamed into place: a file under its final name is always complete, and one that
        exists already is skipped without a request. A link that answers 403, 404 or 410
        (expired) is replaced once by a fresh one from :meth:`download_url`; dropped
        connections, 5xx answers and hosts too slow for the client's :class:`DownloadPolicy`
        are retried by its :class:`RetryPolicy`. Redirects are followed, but never from https
        to http nor to another scheme. Files are fetched with a plain GET: the API key goes
        only to the API's base URL, never to a file host.

        Raises:
            DownloadError: the record has no result URLs, or a file could not be saved (after
                the other files of the call were finished). No partial file is left behind.
            ValidationError: ``concurrency`` is not an int >= 1, or ``dest_dir`` is not a path
                (nothing is fetched).

        Example::

            record = await handle
            paths = await kie.download(record, "videos/")
        """
        from ._download.fetch import download_records

        return await download_records(
            self, [record], _path("dest_dir", dest_dir), concurrency=concurrency
        )

    async def download_many(
        self: FileSource,
        records: Iterable[TaskRecord],
        dest_dir: str | os.PathLike[str],
        *,
        concurrency: int = 4,
    ) -> list[Path]:
        """Save the result files of many finished tasks, at most ``concurrency`` at a time;
        returns every path, in the order of ``records`` and their URLs.

        Each file is handled as in :meth:`download`, so a rerun after a crash or an error
        fetches only what is missing.

        Raises:
            DownloadError: a record has no result URLs (checked before anything is fetched),
                or a file could not be saved (the first such error, raised once every other
                file is finished; the others are logged).
            ValidationError: ``concurrency`` is not an int >= 1, or ``dest_dir`` is not a path
                (nothing is fetched).

        Example::

            records = [o.record for o in outcomes if o.ok and o.record]
            paths = await kie.download_many(records, "videos/", concurrency=8)
        """
        from ._download.fetch import download_records

        return await download_records(
            self, records, _path("dest_dir", dest_dir), concurrency=concurrency
        )

    async def download_journal(
        self: JournalSource,
        journal: str | os.PathLike[str],
        dest_dir: str | os.PathLike[str],
        *,
        concurrency: int = 4,
    ) -> JournalDownload:
        """Save in ``dest_dir`` every result file a bulk run's journal records and has not
        saved yet, and record each in the journal, so the next call fetches nothing.

        kie.ai deletes result files about 14 days after a task ends and has no call listing
        an account's tasks: the journal is the only record of what a run paid for. Files are
        fetched as :meth:`download` fetches them (named ``<task_id>_<i>.<ext>`` inside
        ``dest_dir`` whatever the journal holds, atomic, resumable, a stale link replaced by
        a fresh one from :meth:`download_url`); a file already complete in ``dest_dir`` is
        recorded without a request. A file the journal says was saved counts as saved while
        it is still where it was saved (in any directory); one deleted since is fetched
        again. One file's failure does not stop the others: failures are returned, not
        raised. The call holds the journal's lock, so it cannot run beside a bulk run or
        another download on the same journal. See :func:`read_results` to look without
        fetching.

        Returns:
            A :class:`JournalDownload`: what was fetched, found, and failed, and the journal's
            :class:`JournalResults` after the call (``.ok`` when everything is saved).

        Raises:
            ConfigurationError: no journal at ``journal``, it is not a kie-async journal, or
                it is in use by a run or another download (named); nothing is fetched.
            ValidationError: ``concurrency`` is not an int >= 1, or a path is not a path.
            DownloadError: ``dest_dir`` cannot hold files.
            OSError: the journal cannot be written.

        Example::

            done = await kie.download_journal("run.jsonl", "videos/")
            print(len(done.fetched), "fetched;", len(done.results.missing), "still missing")
        """
        from ._bulk.results_download import download_journal

        return await download_journal(
            self,
            _path("journal", journal),
            _path("dest_dir", dest_dir),
            concurrency=concurrency,
        )

    def extend_many(
        self: BulkClient,
        requests: Iterable[ExtendRequest] | AsyncIterable[ExtendRequest],
        *,
        concurrency: int = 50,
        journal: str | os.PathLike[str] | None = None,
        poll: PollPolicy | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        resubmit_uncertain: bool = False,
        max_credits: int | Decimal | None = None,
        prices: Mapping[str, int | Decimal | str] | None = None,
        preflight: bool = True,
    ) -> BulkRun:
        """Submit and await many extensions: a :class:`BulkRun` yielding one
        :class:`ExtendOutcome` per request as each finishes (not in input order).

        Before the first create, one cheap call checks the key and the host: the account's
        balance (:meth:`credits`, logged at INFO and kept as :attr:`BulkRun.balance`). A bad
        key or an API that cannot be reached ends the run there, raising from the first
        iteration, with nothing sent.

        One bad request never ends the run. After an error that dooms every later submission
        (401 bad key, 402 out of credits, 505 feature disabled, a TLS failure, or three creates
        in a row that could not connect to kie.ai at all) no new create is sent: tasks already
        submitted are still awaited, and the remaining requests are yielded as
        :attr:`OutcomeKind.NOT_SUBMITTED`. Every create goes through the client's rate limiter.

        Args:
            requests: the :class:`ExtendRequest` items, a sync or async iterable; read lazily,
                so a generator of any length works. A sequence (a list, a tuple) has every
                item checked before the first create; an iterator or async iterable is
                checked as it is read (the items before a bad one are submitted).
            concurrency: at most this many requests submitted and not yet consumed: an outcome
                you have not taken yet still holds its place, so a consumer that stops reading
                stops the creates too.
            journal: a JSON-lines file recording progress. A rerun with the same journal skips
                finished requests, re-attaches to submitted ones, and reports a request whose
                create may have reached kie.ai as :attr:`OutcomeKind.UNCERTAIN` instead of
                sending it again.
            poll: the :class:`PollPolicy` for waiting; defaults to the client's.
            on_progress: called with a :class:`Progress` whenever a count changes; an
                exception it raises is logged and ignored.
            resubmit_uncertain: resubmit requests the journal marks uncertain (may pay twice).
            max_credits: a budget: no create is sent that could take the run's spend (with
                what the journal records as spent by earlier runs) past it. Each create's
                price is reserved before it is sent and kept unless kie.ai certainly did not
                accept it (an uncertain create counts as spent); requests held back end as
                :attr:`OutcomeKind.NOT_SUBMITTED` with a :class:`BudgetExceededError`, and
                :attr:`BulkRun.spend` says what was spent and what is left.
            prices: credits per create by kind, taskType or ``"taskType:batch"`` (e.g.
                ``{"extend": 60, "mj_video_hd:2": 90}``), before :data:`DEFAULT_PRICES`. A
                budgeted run refuses to start when a create has no price (see the bulk docs).
                ``"learn:CEILING"`` (or ``"learn"``) instead of a number: a budgeted run
                learns the price from the balance before and after its first create of each
                taskType (alone: no other create goes out meanwhile), which may cost at most
                CEILING (``"learn"``: at most the balance); approximate when the account is
                used elsewhere at the same time. A price that cannot be learned ends every
                later create of it :attr:`OutcomeKind.NOT_SUBMITTED` with a
                :class:`ConfigurationError`; :attr:`BulkRun.spend` names the learned prices.
            preflight: check the key and the host with the balance call before the first
                create (the default). ``False`` skips that call: for a caller that has just
                checked them (many small runs in a row, say), or a host without kie's balance
                endpoint (one that answers it 404 is passed over anyway, with a warning).

        Raises:
            AuthenticationError: the preflight's balance call was refused (401): nothing is
                sent.
            TransportError, APIError, UnexpectedResponseError: the preflight's balance call
                failed after the client's retries (an API that cannot be reached or answers
                errors): nothing is sent.
            ValidationError: ``concurrency`` is not a positive int, ``poll`` is not a
                :class:`PollPolicy`, ``on_progress`` is not callable, or ``preflight`` is not
                a bool (nothing is sent); ``journal`` is not a path (raised by this call
                itself).
            ConfigurationError: ``max_credits`` or ``prices`` is invalid (raised by this call
                itself); with ``max_credits``, a create (an item, a chain's step, or a paid
                create in the journal) has no price (nothing is sent; a sequence is checked
                whole first, an iterator as it is read).
            ConfigurationError: the journal cannot be read, is not a kie-async journal, or is
                in use by another run (its pid, host and start time are named); a
                :class:`RedisRateLimit` whose Redis cannot be reached.
            OSError: the journal cannot be written (the run stops).
            TypeError: an item of ``requests`` is not an :class:`ExtendRequest` (for a
                sequence, before anything is sent).

        Except for a ``journal`` that is not a path and invalid ``max_credits`` or ``prices``,
        these are raised from the iteration, not from this call. Use the run as an async
        context manager (or ``contextlib.aclosing``) to end it when the block ends; see
        :class:`BulkRun` for what a stop costs.

        Example::

            async with kie.extend_many(requests, journal="run.jsonl") as run:
                async for outcome in run:
                    print(outcome.request.task_id, outcome.kind.value)
        """
        from ._bulk.run import extend_many

        return extend_many(
            self,
            requests,
            concurrency=concurrency,
            journal=_path("journal", journal) if journal is not None else None,
            poll=poll,
            on_progress=on_progress,
            resubmit_uncertain=resubmit_uncertain,
            max_credits=max_credits,
            prices=prices,
            preflight=preflight,
        )

    def run_many(
        self: BulkClient,
        requests: Iterable[BulkItem] | AsyncIterable[BulkItem],
        *,
        concurrency: int = 50,
        journal: str | os.PathLike[str] | None = None,
        poll: PollPolicy | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        resubmit_uncertain: bool = False,
        max_credits: int | Decimal | None = None,
        prices: Mapping[str, int | Decimal | str] | None = None,
        preflight: bool = True,
    ) -> BulkRun[BulkItem]:
        """Submit and await many requests of any kind, and chains: :meth:`extend_many` for a
        mix of :class:`GenerateRequest`, :class:`UpscaleRequest`, :class:`VaryRequest`,
        :class:`ExtendRequest` and :class:`Chain` items, with the same arguments, journal, rate
        limit, backpressure, stops and :class:`ExtendOutcome` outcomes (``outcome.request`` is
        the item).

        A :class:`Chain` yields one outcome: its steps run one after another, each journaled
        as a request of its own (its intent before its create, its task id, its end), so a
        rerun resumes a chain at the step it reached and never pays for a finished step
        again; ``outcome.steps`` holds every step's outcome. Journal keys name the kind
        (an extension's key is the same as :meth:`extend_many`'s, so its journals match).

        Raises:
            TypeError: an item is not a request or a :class:`Chain` (every item of a
                sequence is checked before the first create, an iterator's as it is read);
                and the errors of :meth:`extend_many`, from the iteration.

        Example::

            chain = Chain(GenerateRequest.video("waves", image_url=frame), ExtendStep(0, "calm"))
            async with kie.run_many([chain, UpscaleRequest(image_task, 2)]) as run:
                async for outcome in run:
                    print(outcome.request.describe(), outcome.kind.value, outcome.task_id)
        """
        from ._bulk.many import run_many

        return run_many(
            self,
            requests,
            concurrency=concurrency,
            journal=_path("journal", journal) if journal is not None else None,
            poll=poll,
            on_progress=on_progress,
            resubmit_uncertain=resubmit_uncertain,
            max_credits=max_credits,
            prices=prices,
            preflight=preflight,
        )

    async def plan(
        self: PlanSource,
        requests: Iterable[BulkItem] | AsyncIterable[BulkItem],
        *,
        journal: str | os.PathLike[str] | None = None,
        concurrency: int = 50,
        resubmit_uncertain: bool = False,
        max_credits: int | Decimal | None = None,
        prices: Mapping[str, int | Decimal | str] | None = None,
        balance: bool = True,
    ) -> RunPlan:
        """A dry run of :meth:`run_many`: read and check every item, and say what the run
        would send, cost and take, as a :class:`RunPlan`. **No create is sent**; the journal
        is read without being locked or written; the one call is the balance's.

        Args:
            requests, journal, concurrency, resubmit_uncertain, max_credits, prices: as for
                :meth:`run_many` (a missing price is reported, not raised).
            balance: read the account's balance (one call), to say whether it covers the cost.

        Raises:
            TypeError: an item is not a request or a :class:`Chain`.
            ValidationError: ``concurrency`` is not a positive int; ``journal`` is not a path.
            ConfigurationError: ``max_credits`` or ``prices`` is invalid, or the journal cannot
                be read or is not a kie-async journal.
            APIError, TransportError, UnexpectedResponseError: the balance call failed.

        Example::

            plan = await kie.plan(requests, journal="run.jsonl", prices={"upscale": 5})
            print(plan.creates, plan.cost, plan.balance, plan.covers, plan.seconds)
        """
        from ._bulk.plan import plan

        return await plan(
            self,
            requests,
            journal=_path("journal", journal) if journal is not None else None,
            concurrency=concurrency,
            resubmit_uncertain=resubmit_uncertain,
            max_credits=max_credits,
            prices=prices,
            balance=balance,
        )
