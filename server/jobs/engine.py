"""The job engine: a taskiq broker and a JobStore, chosen from the settings, and the
receiver that runs queued work inside every `imgcdn serve` process (docs/jobs.md).

Embedded (no IMGCDN_REDIS_URL): SqliteJobs + SqliteBroker in `<data dir>/jobs.sqlite3`.
With Redis: the rjobs backends (jobs/redis_store.py, jobs/redis_broker.py), imported only
then. Two tasks: `run_item(job_id, index)` renders one batch item through the processing
API's own path (items.py), and `deliver_webhook(job_id)` posts the ended job's status.
Messages are acked by the tasks themselves (taskiq's MANUAL acks), and only once the
outcome is recorded in the JobStore: a process killed mid-item leaves its message
un-acked, and another receiver runs the item again (its result id makes the re-run cheap).
The receiver takes at most IMGCDN_JOB_CONCURRENCY items at once, so batches never take
every render slot from delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from taskiq import AsyncBroker, Context, TaskiqDepends
from taskiq.acks import AcknowledgeType
from taskiq.receiver import Receiver

from server import metrics
from server.errors import StateUnavailable
from server.jobs import items, notify
from server.jobs.model import ItemOutcome, Job, NewJob
from server.jobs.sqlite_broker import SqliteBroker
from server.jobs.sqlite_store import SqliteJobs
from server.jobs.store import JobStore
from server.settings import Settings

if TYPE_CHECKING:
    from server.runtime import Runtime

log = logging.getLogger("imgcdn")
# Past the longest an item can run (source timeout 8 s + render timeout 20 s + queueing):
# a hung, not dead, claimer's message goes to another receiver after this.
LEASE_S = 60.0
# How long a rendered item's outcome waits for an unavailable store (a Redis restart takes
# seconds) before its message is left to run again after the lease.
RECORD_WAIT_S = 30.0
REFRESH_S = 5.0  # how often a process refreshes the job gauges of /metrics
SWEEP_S = 60.0  # how often it drops jobs older than IMGCDN_JOB_KEEP_S


# Both brokers offer `async def depth() -> int`: messages waiting or running (/metrics).
CONTEXT: Context = TaskiqDepends()  # taskiq hands each task its message's Context through this


def concurrency(settings: Settings) -> int:
    # Default: as many as the process has render threads. Half left a core idle between
    # items: a 200-item batch ran at 0.82x the cold /v1/image/process rate, against 0.95x
    # with every thread (bench/jobs.py); delivery then waits behind at most one render.
    return settings.job_concurrency or max(1, settings.render_threads)


def backends(settings: Settings, redis: Redis | None) -> tuple[JobStore, AsyncBroker]:
    """The JobStore and broker the settings ask for. The Redis pair is the rjobs module's,
    imported here only, so an embedded server never loads it."""
    if settings.redis_url:
        from server.jobs.redis_broker import StreamBroker, consumer_name
        from server.jobs.redis_store import RedisJobs

        assert redis is not None  # Runtime.start opens it whenever redis_url is set
        # Ended jobs expire in Redis after the keep time (sweep only tidies the index).
        redis_store = RedisJobs(redis, keep_s=settings.job_keep_s)
        # The idle reclaim is the backstop for a consumer alive but stuck: past the longest
        # item, like the embedded lease. A dead consumer's items go at once (liveness key).
        redis_broker = StreamBroker(
            settings.redis_url,
            consumer_name(),
            concurrency(settings),
            timeout_s=settings.state_timeout_s,
            idle_s=LEASE_S,
        )
        return redis_store, redis_broker
    path = settings.data_dir / "jobs.sqlite3"
    return (
        SqliteJobs(path, settings.state_timeout_s),
        SqliteBroker(path, LEASE_S, settings.state_timeout_s),
    )


@contextlib.asynccontextmanager
async def _left_for_redelivery(what: str, ident: str) -> AsyncIterator[None]:
    """A task that meets the job store down is left unacked: the broker hands its message
    out again (the lease, a dead consumer's claim). An expected outage, so one warning line,
    not the traceback taskiq would log for an exception out of the task."""
    try:
        yield
    except StateUnavailable as exc:
        log.warning("jobs: %s %s left for redelivery: %s", what, ident, exc)


class Engine:
    """The broker, the store, the two tasks, and the receiver of one process."""

    def __init__(self, settings: Settings, store: JobStore, broker: AsyncBroker) -> None:
        self.settings, self.store, self.broker = settings, store, broker
        self.concurrency = concurrency(settings)
        self.rt: Runtime | None = None

        # Plain functions: taskiq renames what it registers, which a bound method refuses.
        async def run_item(job_id: str, index: int, context: Context = CONTEXT) -> None:
            async with _left_for_redelivery("item", job_id):
                await self._run_item(job_id, index, context)

        async def deliver_webhook(job_id: str, context: Context = CONTEXT) -> None:
            async with _left_for_redelivery("webhook", job_id):
                await self._deliver_webhook(job_id, context)

        self.run_item_task = broker.register_task(run_item, task_name="imgcdn.run_item")
        self.webhook_task = broker.register_task(
            deliver_webhook, task_name="imgcdn.deliver_webhook"
        )

        async def run_correction(task_id: str, context: Context = CONTEXT) -> None:
            # Seed 003's async tasks (routes/correction_tasks.py): acked once recorded.
            from server.routes import correction_tasks

            assert self.rt is not None
            async with _left_for_redelivery("correction task", task_id):
                await correction_tasks.execute(self.rt, task_id)
                await context.ack()

        self.correction_task = broker.register_task(
            run_correction, task_name="imgcdn.run_correction"
        )
        self._finish = asyncio.Event()
        self._receiver: asyncio.Task[None] | None = None
        self._housekeeping: asyncio.Task[None] | None = None

    @classmethod
    def build(cls, settings: Settings, redis: Redis | None) -> Engine:
        store, broker = backends(settings, redis)
        return cls(settings, store, broker)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, rt: Runtime, stack: contextlib.AsyncExitStack) -> None:
        """Start the receiver; on `stack`, its graceful stop (pushed after the render pool,
        so unwound before it: running items finish, are recorded and acked)."""
        self.rt = rt
        # taskiq logs every message it runs at INFO: a line per item of every batch.
        logging.getLogger("taskiq.receiver.receiver").setLevel(logging.WARNING)
        self.broker.is_worker_process = True
        await self.broker.startup()
        receiver = Receiver(
            self.broker,
            max_async_tasks=self.concurrency,
            max_prefetch=0,  # a message is claimed only when a slot is free to run it
            run_startup=False,
            ack_type=AcknowledgeType.MANUAL,
        )
        self._receiver = asyncio.create_task(receiver.listen(self._finish))
        self._housekeeping = asyncio.create_task(self._keep())
        stack.push_async_callback(self.stop)

    async def stop(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        if self._receiver is None:
            return
        self._finish.set()
        s = self.settings
        try:
            # Running items finish: they are bounded by the source and render timeouts.
            await asyncio.wait_for(
                asyncio.shield(self._receiver), s.source_timeout_s + s.render_timeout_s + 5
            )
        except TimeoutError:
            log.warning("jobs: items still running at shutdown; they run again elsewhere")
            self._receiver.cancel()
        except Exception:  # the receiver failed: its messages are re-delivered anyway
            log.exception("jobs: the receiver stopped with an error")
        self._receiver = None

    async def close(self) -> None:
        """After `stop`: the broker hands back what it claimed, then the store closes."""
        with contextlib.suppress(Exception):
            await self.broker.shutdown()
        await self.store.close()

    # -- what the API calls ----------------------------------------------------------

    async def submit(self, job: NewJob) -> Job:
        """Store the job, then queue every item. A failing queue cancels the job (its
        items will never run) and answers 503: nothing is left half-submitted."""
        created = await self.store.create(job)
        now = time.time()
        try:
            for index in range(len(job.items)):
                await self.run_item_task.kicker().with_labels(enqueued_at=now).kiq(job.id, index)
            if job.webhook_url:
                await self.kick_webhook(job.id, now + notify.WATCH_S, watch=True)
        except Exception as exc:
            with contextlib.suppress(Exception):
                await self.store.cancel(job.id, None)
            raise StateUnavailable("the job queue is unavailable") from exc
        return created

    async def cancel(self, job_id: str, owner: str | None) -> Job | None:
        """Cancel (idempotent); when this call ended the job, its webhook goes out."""
        before = await self.store.get(job_id, owner)
        if before is None:
            return None
        after = await self.store.cancel(job_id, owner)
        if after is not None and before.finished_at is None and after.finished_at is not None:
            await self.ended(after)
        return after

    async def kick_webhook(
        self, job_id: str, not_before: float | None, watch: bool = False
    ) -> None:
        """Queue a delivery attempt (`watch`: the job's watchdog, notify.py)."""
        kicker = self.webhook_task.kicker()
        if not_before is not None:
            kicker = kicker.with_labels(not_before=not_before)
        if watch:
            kicker = kicker.with_labels(watch=1)
        await kicker.kiq(job_id)

    async def ended(self, job: Job) -> None:
        if job.webhook is not None:
            await self.kick_webhook(job.id, None)

    # -- the tasks -------------------------------------------------------------------

    async def _run_item(self, job_id: str, index: int, context: Context) -> None:
        labels = context.message.labels
        enqueued = float(labels.get("enqueued_at") or time.time())
        spec = await self.store.start_item(job_id, index)
        if spec is None:  # cancelled, or ended by an earlier run of this message
            await context.ack()
            return
        metrics.job_item_started(time.time() - enqueued)
        assert self.rt is not None
        tries = int(labels.get("tries") or 0) + 1
        outcome = await items.run(self.rt, spec, index, retry=tries < items.MAX_TRIES)
        if outcome is None:  # our own capacity was short: queue it again, a little later
            await (
                self.run_item_task.kicker()
                .with_labels(enqueued_at=enqueued, tries=tries, not_before=time.time() + tries)
                .kiq(job_id, index)
            )
            await context.ack()
            return
        ended = await self._record(job_id, index, outcome)
        metrics.job_item_finished(outcome.status, time.time() - enqueued)
        if ended:
            job = await self.store.get(job_id, None)
            if job is not None:
                await self.ended(job)
        await context.ack()

    async def _record(self, job_id: str, index: int, outcome: ItemOutcome) -> bool:
        """finish_item, retried while the store is unavailable: the render is done, and
        giving up at once would leave the message to run again only after the lease."""
        deadline = time.monotonic() + RECORD_WAIT_S
        pause = 0.2
        while True:
            try:
                return await self.store.finish_item(job_id, index, outcome)
            except StateUnavailable:
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("jobs: the job store is unavailable; recording item %d again", index)
                await asyncio.sleep(pause)  # backing off while the store comes back
                pause = min(pause * 2, 2.0)

    async def _deliver_webhook(self, job_id: str, context: Context) -> None:
        assert self.rt is not None
        watch = str(context.message.labels.get("watch") or "") in ("1", "True", "true")
        await notify.deliver(self.rt, self, job_id, watch)
        await context.ack()

    # -- housekeeping ----------------------------------------------------------------

    async def _keep(self) -> None:
        """Refresh the job gauges; sweep jobs kept past IMGCDN_JOB_KEEP_S."""
        swept_at = 0.0
        while True:
            try:
                counts = await self.store.counts()
                depth_of = getattr(self.broker, "depth", None)
                depth = await depth_of() if depth_of is not None else None
                metrics.job_state(counts, depth)
                if time.monotonic() - swept_at > SWEEP_S:
                    swept_at = time.monotonic()
                    dropped = await self.store.sweep(time.time(), self.settings.job_keep_s)
                    if dropped:
                        log.info("jobs: swept %d finished jobs", dropped)
            except StateUnavailable:
                log.warning("jobs: the job store is unavailable; gauges not refreshed")
            await asyncio.sleep(REFRESH_S)


async def submit(rt: Runtime, job: NewJob) -> Job:
    return await rt.engine.submit(job)


async def kick_webhook(rt: Runtime, job_id: str, not_before: float | None) -> None:
    await rt.engine.kick_webhook(job_id, not_before)
