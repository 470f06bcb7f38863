"""The engine API every front end uses (HTTP routes, CLI, benchmarks, tests): no HTTP in here.

    async with Engine.open(settings) as engine:
        job = await engine.submit(account, "txt2embedding", spec, params)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Sequence

from engine.accounts import Account, AccountStore
from engine.database import Database, SqlStore, open_database
from engine.devices import DeviceBudget, probe_devices
from engine.dispatcher import Dispatcher
from engine.crash_report import CrashReport
from engine.errors import InvalidRequest, NotFound
from engine.events import EventBus, JobEvent
from engine.executor_process import ExecutorProcess
from engine.job_intake import JobIntake
from engine.jobs import TERMINAL, Job, JobOrder, JobStore
from engine.measurements import MeasurementStore
from engine.process_memory import default_memory_limit
from engine.rate_limits import RateLimiter, configured_limits
from engine.results import ResultSigner, ResultStore
from engine.settings import Settings
from engine.tasks import task_named
from engine.webhooks import WebhookOutbox
from engine.worker import GpuWorker, ModelStats
from model_registry import LoadedModel, ModelRegistry, ModelSpec, TokenCounter, WeightsLocator, price_of
from model_registry.placement import Placement

if TYPE_CHECKING:  # PostgreSQL only: psycopg is imported when a database_url is set
    from engine.event_relay import EventRelay
    from engine.leader import Leadership

__all__ = ("Engine", "Serving", "Upload")

_PENDING_SWEEP_SECONDS = 5.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upload:
    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Serving:
    """A snapshot of the executor for the dashboard, /models and /metrics."""

    queue_depth: int
    device: str
    budget_bytes: int
    resident: list[ModelStats]
    measured: dict[str, int]
    """Memory each model was measured to take when it last loaded."""
    load_seconds: dict[str, float]
    loads: int
    evictions: int
    unparks: int
    inference_process_deaths: int | None = None
    """How often the inference process died (crash, memory limit) since start; None: inference runs here."""


class Engine:
    runs_jobs = True
    """This process runs the jobs and delivers the webhooks: the only process, or the leader of several
    sharing PostgreSQL (engine/leader.py); a follower only takes submits and serves reads and sockets."""
    _announce: Callable[[str], None] | None = None
    """A follower's way to hand a new job to the leader (engine/event_relay.py)."""
    _collector: asyncio.Task | None = None
    _sweeper: asyncio.Task | None = None

    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        db: Database,
        budget: DeviceBudget | Sequence[DeviceBudget],
        load_fn: Callable[[ModelSpec, str, Placement], LoadedModel] | None = None,
        isolated: ExecutorProcess | Sequence[ExecutorProcess] | None = None,
        workers: Callable[["Engine"], Sequence[GpuWorker]] | None = None,
    ) -> None:
        """``budget``: the device, or one per device (a worker each); ``isolated``: the inference process, or one
        per device; ``workers``: builds the devices' workers instead of one GpuWorker per budget (cluster mode,
        engine/cluster: a proxy per Ray actor that does what the dispatcher and ``serving`` ask of a GpuWorker)."""
        self.settings = settings
        self.registry = registry
        self.db = db
        self.accounts = AccountStore(db)
        self.jobs = JobStore(db, settings.home)
        self.intake = JobIntake(
            self.jobs, accepted=self._queue, refused=lambda order: self._drop_inputs(order.job_id)
        )
        self.measurements = MeasurementStore(db)
        self._end_waiters: dict[str, set[asyncio.Future]] = {}
        """Held request-status calls, by job: woken when the job ends."""
        self._queued: set[str] = set()
        """Jobs handed to the workers here and not ended: a leader's sweep queues only the pending jobs that
        are not among them."""
        self.results = ResultStore(settings.results_dir)
        self.signer = ResultSigner(
            db.meta("result_secret", lambda: secrets.token_hex(32)),
            settings.base_url,
            settings.result_ttl_seconds,
            epoch_of=self._result_epoch,
        )
        self.events = EventBus()
        self.rate_limiter = RateLimiter(db, configured_limits(settings.rate_limits), settings.rate_limits_enabled)
        self.tokens = TokenCounter()
        budgets = [budget] if isinstance(budget, DeviceBudget) else list(budget)
        processes = list(isolated) if isinstance(isolated, Sequence) else [isolated] * len(budgets)

        def build_workers() -> list[GpuWorker]:
            if workers is not None:
                return list(workers(self))
            working = self.measurements.working()
            return [
                GpuWorker(
                    registry, self.jobs, self.results, self.events, device, settings, load_fn,
                    on_loaded=self.measurements.record, isolated=process, working_measured=working,
                    on_working=self.measurements.record_working, on_step=self._device_changed,
                )
                for device, process in zip(budgets, processes, strict=True)
            ]

        self._build_workers = build_workers
        self.workers = build_workers()
        """One worker per device; engine/dispatcher.py routes each job to one."""
        self._terms = 0
        """How many times this process has taken the lead (PostgreSQL: a leader deposed by a broken session
        campaigns again, and a stopped worker does not start twice)."""
        self.dispatcher = Dispatcher(
            lambda item: [w.view(item[0]) for w in self.workers],
            lambda index, item: self.workers[index].enqueue(item[0], started=item[1]),
            settings.max_wait_seconds,
        )
        self.webhooks = WebhookOutbox(
            db,
            self.jobs.get,
            lambda account_id: self.accounts.get_account(account_id).webhook_secret,
            self.result_url,
            delays=settings.webhook_retry_delays,
            loopback_allowed=lambda account_id: self.webhook_loopback_allowed(self.accounts.get_account(account_id)),
            allowed_hosts=settings.webhook_allowed_hosts,
        )
        self._download_slots = asyncio.Semaphore(settings.max_downloads)
        self._downloads: set[asyncio.Task] = set()

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        settings: Settings,
        *,
        budget: DeviceBudget | Sequence[DeviceBudget] | None = None,
        load_fn: Callable[[ModelSpec, str, Placement], LoadedModel] | None = None,
        registry: ModelRegistry | None = None,
        workers: Callable[["Engine"], Sequence[GpuWorker]] | None = None,
    ) -> AsyncIterator["Engine"]:
        settings.ensure_dirs()
        budgets = [budget] if isinstance(budget, DeviceBudget) else list(budget or probe_devices(settings))
        # A given loader or registry lives in this process (tests inject them): inference stays here too.
        isolated: list[ExecutorProcess | None] = [None] * len(budgets)
        if settings.isolate_executor and load_fn is None and registry is None and workers is None:
            limit = settings.executor_memory_limit_bytes
            limit = default_memory_limit(0.85) if limit is None else limit
            # One inference process per device; together they stay within the one limit.
            isolated = [ExecutorProcess(settings, limit // len(budgets)) for _ in budgets]
        registry = registry or ModelRegistry.from_files(WeightsLocator(settings.models_dir), settings.config_file)
        db = open_database(settings)
        if isinstance(db, Database):
            db.checkpoint_in_background()
        engine = cls(settings, registry, db, budgets, load_fn, isolated, workers)
        engine.events.bind(asyncio.get_running_loop())
        engine.events.subscribe(engine._clean_inputs)
        engine.events.subscribe(engine._wake_end_waiters)
        engine.events.subscribe(engine.webhooks.on_event)
        relay = leadership = None
        if db.shared:  # several API processes: each hears the others' events; one leads
            relay, leadership = await engine._join_others(db)
        else:
            await engine._take_lead()
        try:
            yield engine
        finally:
            for task in list(engine._downloads):
                task.cancel()
            await asyncio.gather(*engine._downloads, return_exceptions=True)
            await engine._stop_leading()
            if leadership is not None:  # after the duties stop, so the next leader never overlaps them
                await leadership.stop()
            if relay is not None:
                await relay.stop()
            db.close()

    async def _take_lead(self) -> None:
        """Start what one process runs: recovery of what a crash (or a dead leader) left, the workers, the
        webhook outbox and the collector."""
        if self._terms:  # the last term's workers were stopped for good, their queues with them
            self.workers = self._build_workers()
        self._terms += 1
        self.runs_jobs = True
        self._queued.clear()
        self.dispatcher.clear()
        self.recover()
        for worker in self.workers:
            worker.start()
        self.webhooks.start()
        self._collector = asyncio.create_task(self._collect_periodically(), name="drylocal-gc")
        if self.db.shared:
            self._sweeper = asyncio.create_task(self._sweep_pending_periodically(), name="drylocal-pending-sweep")

    async def _stop_leading(self) -> None:
        if not self.runs_jobs:
            return
        self.runs_jobs = False
        for task in (self._collector, self._sweeper):
            if task is not None:
                task.cancel()
        await self.webhooks.stop()
        for worker in self.workers:
            await worker.stop()

    async def _join_others(self, db: SqlStore) -> tuple["EventRelay", "Leadership"]:
        """Relay events to and from the other API processes and campaign to lead them; until elected, this
        process hands its submits to the leader."""
        from engine.event_relay import EventRelay
        from engine.leader import Leadership

        self.runs_jobs = False
        relay = EventRelay(db, self.events, self._job_announced)
        await relay.start()
        self.events.relay_to(relay.send)
        self._announce = relay.announce
        leadership = Leadership(db.url, self._take_lead, self._stop_leading)
        await leadership.start()
        return relay, leadership

    def _job_announced(self, job_id: str) -> None:
        """A job another process took: queued here if this process leads (a duplicate is harmless, the
        guarded start runs a job once)."""
        if not self.runs_jobs or job_id in self._queued:
            return
        job = self.jobs.get(job_id)
        if job is not None and job.status == "pending":
            self._queue(job)

    async def _sweep_pending_periodically(self) -> None:
        """The leader's catch-all for a follower's announcement it never heard (a NOTIFY is lost with the
        listening session that should have heard it): every pending job that is not queued here is."""
        while True:
            await asyncio.sleep(_PENDING_SWEEP_SECONDS)
            for job_id in self.jobs.pending_ids(before=time.time() - _PENDING_SWEEP_SECONDS):
                self._job_announced(job_id)

    def _quarantine_after_crash(self) -> list[str]:
        """After the supervisor saw the last server die of a job (memory, a crash): fail what it was
        running, refunded, with the reason. A server lost otherwise leaves no report: its jobs re-queue."""
        report = CrashReport.take(self.settings.home)
        if report is None:
            return []
        if report.reason == "memory":
            code, message = "OUT_OF_MEMORY", f"{report.detail[:1].upper()}{report.detail[1:]}; the server was restarted"
        else:
            code, message = "PROCESSING_ERROR", f"drylocal crashed while running this job ({report.detail})"
        failed = self.jobs.quarantine_running(code, f"{message} and the job is not retried, so it cannot do it again.")
        if failed:
            log.warning("failed %d job(s) the last server died running: %s", len(failed), report.detail)
        return failed

    def recover(self) -> None:
        """Re-queue what a crash interrupted (once), fail what it interrupted twice, queue the rest."""
        self.results.sweep_partials()
        failed = self._quarantine_after_crash()
        failed += self.jobs.recover(self.settings.max_attempts)[1]
        for job_id in failed:
            job = self.jobs.get(job_id)
            self.events.publish(JobEvent.of(job, "processing"))
        for job in self.jobs.pending():
            self._queue(job)
        day_ago = time.time() - 24 * 3600
        for job_id in self.webhooks.unrecorded_starts(since=day_ago):
            self.events.publish(replace(JobEvent.of(self.jobs.get(job_id), "pending"), status="processing"))
        for job_id in self.webhooks.unrecorded_endings(since=day_ago):
            job = self.jobs.get(job_id)
            self.events.publish(JobEvent.of(job, "processing"))

    # ---------------------------------------------------------------- jobs
    def quote(self, spec: ModelSpec, params: dict[str, Any]) -> float:
        return price_of(spec, params)

    def count_tokens(self, spec: ModelSpec, texts: list[str]) -> list[int]:
        return self.tokens.count(texts, self.registry.locator.find(spec))

    def webhook_loopback_allowed(self, account: Account) -> bool:
        """Only the owner's keys may have this server call its own ports."""
        return self.settings.webhook_allow_http_loopback and not account.billed

    def check_webhook(self, account: Account, url: str) -> None:
        """InvalidRequest on ``webhook_url`` for a URL this account's webhooks may not reach."""
        from engine.webhooks import WebhookRefused, check_webhook_url

        try:
            check_webhook_url(url, self.webhook_loopback_allowed(account), self.settings.webhook_allowed_hosts)
        except WebhookRefused as exc:
            raise InvalidRequest.on("webhook_url", str(exc)) from None

    async def submit(
        self,
        account: Account,
        task: str,
        spec: ModelSpec,
        params: dict[str, Any],
        uploads: list[Upload] = (),
        *,
        webhook_url: str | None = None,
        return_inline: bool = False,
        price: float | None = None,
    ) -> Job:
        """Persist the job as ``pending`` (inputs first, then the row) and queue it."""
        if webhook_url:
            await asyncio.to_thread(self.check_webhook, account, webhook_url)
        job_id = str(uuid.uuid4())
        inputs = await asyncio.to_thread(self._save_inputs, job_id, uploads) if uploads else {}
        try:
            order = JobOrder(
                account, task=task, model=spec.slug, params=params, inputs=inputs,
                price=self.quote(spec, params) if price is None else price, job_id=job_id, webhook_url=webhook_url,
                return_inline=return_inline,
            )
        except BaseException:
            self._drop_inputs(job_id)
            raise
        # Written, then queued, in the intake's flush; a refused order's inputs are dropped there, so a submit
        # cancelled meanwhile leaves neither a job without inputs nor inputs without a job.
        return await self.intake.create(order)

    def _drop_inputs(self, job_id: str) -> None:
        shutil.rmtree(self.settings.inputs_dir / job_id, ignore_errors=True)

    async def run_inline(
        self, account: Account, task: str, spec: ModelSpec, params: dict[str, Any], uploads: list[Upload] = (), timeout: float = 600.0
    ) -> Job:
        """Submit a job and wait for its end: for routes that answer at once (the prompt boosters).

        It is still a durable job, so it is queued, scheduled, billed and recorded like any other.
        """
        job = await self.submit(account, task, spec, params, uploads, return_inline=True)
        # Woken by its own end (``ended``), not by a subscriber that sees every job's events: with n requests
        # waiting, each event went through n watchers.
        job = await self.ended(job, timeout)
        if not job.finished:
            raise asyncio.TimeoutError(f"job {job.id} did not end within {timeout:.0f} s")
        return job

    async def ended(self, job: Job, timeout: float) -> Job:
        """The job once it has ended, or as it stands after ``timeout`` seconds (a bounded long poll)."""
        if job.finished or timeout <= 0:
            return job
        waiter = asyncio.get_running_loop().create_future()
        self._end_waiters.setdefault(job.id, set()).add(waiter)
        try:
            current = self.jobs.get(job.id)  # it may have ended before the waiter was registered
            if current is None or current.finished:
                return current or job
            await asyncio.wait_for(waiter, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            waiters = self._end_waiters.get(job.id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._end_waiters[job.id]
        return self.jobs.get(job.id) or job

    async def _wake_end_waiters(self, event: JobEvent) -> None:
        if event.status in TERMINAL:
            self._queued.discard(event.job_id)
            for waiter in self._end_waiters.pop(event.job_id, ()):
                if not waiter.done():
                    waiter.set_result(None)

    # ---------------------------------------------------------------- what the front ends read
    def job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def recent_jobs(self, account_id: str) -> list[Job]:
        return self.jobs.recent(account_id)

    def job_counts(self) -> dict[tuple[str, str], int]:
        """Jobs in the store by (task, status)."""
        return self.jobs.counts_by_task()

    def subscribe(self, subscriber: Callable[[JobEvent], Any]) -> Callable[[], None]:
        """Every job status change from now on; returns the way to stop."""
        return self.events.subscribe(subscriber)

    def count_request(self, account: Account, bucket: str | None) -> None:
        """One request of ``bucket`` against the account's rate limits (RateLimited past them)."""
        self.rate_limiter.hit(account.id, account.tier, bucket)

    @property
    def worker(self) -> GpuWorker:
        """The first device's worker (the only one on a one-device machine)."""
        return self.workers[0]

    def serving(self) -> Serving:
        """The executors as they stand, every device together: queues, the models in memory, what loading took."""
        workers = self.workers
        deaths = [w.isolated.generation for w in workers if w.isolated is not None]
        return Serving(
            queue_depth=sum(w.queue_depth for w in workers) + self.dispatcher.held,
            device=", ".join(w.budget.device for w in workers),
            budget_bytes=sum(w.budget.budget_bytes for w in workers),
            resident=[m for w in workers for m in w.resident()],
            measured={slug: b for w in workers for slug, b in w.measured.items()},
            load_seconds={slug: s for w in workers for slug, s in w.load_seconds.items()},
            loads=sum(w.loads for w in workers),
            evictions=sum(w.evictions for w in workers),
            unparks=sum(w.unparks for w in workers),
            inference_process_deaths=sum(deaths) if deaths else None,
        )

    def placement(self, slug: str) -> Placement:
        """How a model is (or would be) placed on this machine: on its largest device."""
        return max(self.workers, key=lambda w: w.budget.budget_bytes).placement(slug)

    def _device_changed(self) -> None:
        self.dispatcher.retry()

    def _submit(self, job: Job, started: bool) -> None:
        if len(self.workers) == 1:  # nothing to choose between
            self.workers[0].enqueue(job, started=started)
        else:
            self.dispatcher.submit((job, started))

    def signed_url(self, relative: str) -> str:
        return self.signer.url(relative)

    def result_file(self, relative: str, expires: str | None, signature: str | None) -> Path:
        """The stored result a signed URL names; Forbidden for a bad or expired signature."""
        self.signer.verify(relative, expires, signature)
        return self.results.path_of(relative)

    def result_bytes(self, job: Job) -> bytes:
        return self.results.path_of(job.result_file).read_bytes()

    def secret(self, name: str) -> str:
        """A random secret made once and kept in the database (the Pusher app secret)."""
        return self.db.meta(name, lambda: secrets.token_hex(32))

    def job_for(self, job_id: str, account: Account) -> Job:
        job = self.jobs.get(job_id)
        if job is None or job.account_id != account.id:
            raise NotFound("Request not found.")
        return job

    def _result_epoch(self, relative: str) -> str:
        """The owning account's revocation count: a revoked key ends every URL signed before it."""
        job = self.jobs.get(relative.split("/", 1)[0])
        return self._epoch_of_account(job.account_id) if job is not None else ""

    def result_url(self, job: Job) -> str | None:
        if job.status != "done" or not job.result_file:
            return None
        return self.signer.url(job.result_file, epoch=self._epoch_of_account(job.account_id))

    def alt_result_urls(self, job: Job) -> dict[str, str]:
        if job.status != "done" or not job.result_alt:
            return {}
        epoch = self._epoch_of_account(job.account_id)
        return {fmt: self.signer.url(path, epoch=epoch) for fmt, path in job.result_alt.items()}

    def _epoch_of_account(self, account_id: str) -> str:
        """What ``_result_epoch`` finds, for a job in hand: a poll reads the job once, not once a URL."""
        return str(self.accounts.revocations(account_id))

    # ---------------------------------------------------------------- internals
    def _queue(self, job: Job) -> None:
        if not self.runs_jobs and self._announce is not None:  # the leader runs it: wake its dispatcher
            self._announce(job.id)
            return
        self._queued.add(job.id)
        if self._download_url(job) and not job.inputs.get("media"):
            task = asyncio.ensure_future(self._download(job))
            self._downloads.add(task)
            task.add_done_callback(self._downloads.discard)
        else:
            self._submit(job, started=False)

    @staticmethod
    def _download_url(job: Job) -> str | None:
        """The URL of the media a job downloads before it runs, if its task takes one and it was given."""
        task = task_named(job.task)
        return job.params.get(task.download_field) if task and task.download_field else None

    async def _download(self, job: Job) -> None:
        """Fetch a URL job's media off the GPU's queue; the job shows ``processing`` at 0% meanwhile."""
        from engine import fetch

        async with self._download_slots:
            if not self.jobs.start(job.id):
                return
            self.events.publish(JobEvent.of(self.jobs.get(job.id), "pending"))
            url = self._download_url(job)
            try:
                path = await asyncio.to_thread(
                    fetch.download, url, self.settings.inputs_dir / job.id, allowed_hosts=self.settings.fetch_allowed_hosts
                )
            except fetch.FetchError as exc:
                self._fail(job.id, "INVALID_INPUT", str(exc))
                return
            except Exception as exc:  # a job accepted must end with a reason, whatever yt-dlp raised
                log.exception("downloading %s failed", url)
                self._fail(job.id, "INVALID_INPUT", f"The media could not be downloaded: {exc}")
                return
            inputs = {**job.inputs, "media": str(path)}
            self.jobs.set_inputs(job.id, inputs)
            self._submit(self.jobs.get(job.id), started=True)

    def _fail(self, job_id: str, code: str, message: str) -> None:
        job = self.jobs.get(job_id)
        if job and self.jobs.fail(job_id, code, message):
            self.events.publish(JobEvent.of(self.jobs.get(job_id), job.status))

    def _save_inputs(self, job_id: str, uploads: list[Upload]) -> dict[str, Any]:
        if not uploads:
            return {}
        folder = self.settings.inputs_dir / job_id
        folder.mkdir(parents=True, exist_ok=True)
        saved: dict[str, Any] = {}
        for index, upload in enumerate(uploads):
            suffix = Path(upload.filename).suffix.lower()[:8]
            path = folder / f"{upload.field.replace('[]', '')}_{index}{suffix}"
            path.write_bytes(upload.data)
            if upload.field in saved:
                previous = saved[upload.field]
                saved[upload.field] = (previous if isinstance(previous, list) else [previous]) + [str(path)]
            else:
                saved[upload.field] = str(path)
        return saved

    async def _collect_periodically(self) -> None:
        """Expire results, leftover inputs and old rows (engine/retention.py) once an interval."""
        from engine.retention import collect

        interval = self.settings.gc_interval_seconds
        while interval > 0:
            await asyncio.sleep(interval)
            try:
                report = await asyncio.to_thread(collect, self.db, self.settings)
                log.info("retention: %s", report)
            except Exception:  # a failed sweep is retried at the next interval
                log.exception("retention sweep failed")

    async def _clean_inputs(self, event: JobEvent) -> None:
        # Most jobs (text in, text out) have no inputs folder: a look first, not a thread hop for each.
        if event.status in TERMINAL and (folder := self.settings.inputs_dir / event.job_id).is_dir():
            await asyncio.to_thread(shutil.rmtree, folder, True)
