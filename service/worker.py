"""Celery workers on a Redis broker (HEADSHOT_BROKER_URL): `headshot worker --queues gpu` or `--queues cpu`.

The broker only carries "run stage S of job J" to the right queue (train and render on `gpu`, score on
`cpu`); the database decides who runs what (service/jobs.py). Messages are acknowledged when a worker takes
them, and each worker process runs one stage at a time (the solo pool, one message prefetched), so no
message sits unacknowledged behind a running stage: Redis' visibility timeout (one hour by default), which
cannot tell a long stage from a dead worker, never decides anything. A worker that dies takes its
acknowledged message with it; its lease in the database runs out after HEADSHOT_LEASE_SECONDS and the
sweeper every worker runs queues the stage again. A duplicate message (a sweeper and a late hand-off both
dispatching) is harmless: only one worker's claim can succeed.
"""

import logging
import threading

from service.jobs import QUEUE_FOR_STAGE, run_stage, sweep, worker_name

RUN_STAGE = "headshot.run_stage"
QUEUES = ("gpu", "cpu")
log = logging.getLogger("headshot.worker")


def celery_app(settings):
    from celery import Celery

    app = Celery("headshot", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_ignore_result=True,
        task_acks_late=False,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        task_default_queue="cpu",
    )
    return app


class CeleryDispatcher:
    """What the API replicas use to hand stages to the workers."""

    def __init__(self, settings):
        self.app = celery_app(settings)

    def start(self) -> None:
        """Nothing runs in the API process; workers sweep for lost and undispatched jobs."""

    def stop(self) -> None:
        self.app.close()

    def dispatch(self, job_id: str, stage: str) -> None:
        self.app.send_task(RUN_STAGE, args=[job_id, stage], queue=QUEUE_FOR_STAGE[stage], retry=False)


def run_worker(settings, queues: list[str], name: str | None = None) -> None:
    """Serve the given queues until stopped (SIGTERM finishes the current stage first)."""
    from celery import signals

    from service.database import engine_for

    engine = engine_for(settings.resolved_database_url)  # fails early and clearly on an unmigrated database
    app = celery_app(settings)
    dispatcher = CeleryDispatcher(settings)
    worker = name or worker_name("+".join(queues))

    @app.task(name=RUN_STAGE)
    def run(job_id: str, stage: str) -> None:
        run_stage(settings, job_id, stage, worker=worker, dispatch=dispatcher.dispatch)

    stopping = threading.Event()

    def sweep_forever() -> None:
        while not stopping.wait(max(0.5, settings.lease_seconds / 2)):
            try:
                sweep(engine, dispatcher.dispatch, settings.max_attempts)
            except Exception as exc:  # the database or broker is away for a moment; try again next round
                log.warning("job sweep failed: %s", exc)

    @signals.worker_ready.connect(weak=False)
    def start_sweeper(**_) -> None:
        threading.Thread(target=sweep_forever, name="headshot-sweeper", daemon=True).start()

    @signals.worker_shutdown.connect(weak=False)
    def stop_sweeper(**_) -> None:
        stopping.set()

    app.worker_main(
        [
            "worker",
            "--queues",
            ",".join(queues),
            "--pool",
            "solo",
            "--prefetch-multiplier",
            "1",
            "--hostname",
            f"{worker}@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ]
    )
