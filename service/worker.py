"""Celery workers on a Redis broker (HEADSHOT_BROKER_URL): `headshot worker --queues gpu` or `--queues cpu`.

The broker only carries "run stage S of job J" to the right queue (train and render on `gpu`, score on
`cpu`); the database decides who runs what (service/jobs.py), so a message delivered twice is harmless:
only one claim can succeed, and a message for a stage the job has left is dropped.

Liveness is the lease in the database, not the broker. A worker that dies mid-stage stops renewing its
lease; after HEADSHOT_LEASE_SECONDS the sweeper every worker runs queues the stage again, and another worker
resumes it. Redis' visibility timeout (one hour by default) cannot tell a long stage from a dead worker,
so it decides nothing about running jobs: messages are acknowledged when their stage ends (late), each
worker process runs one stage at a time with one message prefetched (the solo pool), and the timeout,
HEADSHOT_REDELIVERY_SECONDS, only brings back a message whose worker died before it could even claim the
job. The copies it brings back meanwhile for stages still running are claims that fail and are dropped.

Webhook deliveries go to a third queue, `webhooks` (one short POST each, never behind a stage): every worker
hands the due ones to it each second (service/background.py), and a worker serving it sends them.
"""

import logging
import threading

from sqlalchemy.exc import SQLAlchemyError

from service.background import PeriodicWork
from service.jobs import QUEUE_FOR_STAGE, sweep, worker_name
from service.stages import remove_stale_scratch, run_stage

RUN_STAGE = "headshot.run_stage"
DELIVER_WEBHOOK = "headshot.deliver_webhook"
QUEUES = ("gpu", "cpu", "webhooks")
log = logging.getLogger("headshot.worker")


def celery_app(settings):
    from celery import Celery

    app = Celery("headshot", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_ignore_result=True,
        task_acks_late=True,
        broker_transport_options={"visibility_timeout": settings.redelivery_seconds},
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        task_default_queue="cpu",
    )
    return app


class CeleryDispatcher:
    """What the API replicas use to hand stages to the workers."""

    def __init__(self, services):
        self.app = celery_app(services.settings)
        # a broker that is down fails a dispatch at once (one quick retry), not after seconds of retries:
        # the job stays queued and the sweeper hands it on when the broker is back
        self.app.conf.broker_transport_options = {
            **self.app.conf.broker_transport_options,
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.2,
        }

    def start(self) -> None:
        """Nothing runs in the API process; workers sweep for lost and undispatched jobs."""

    def stop(self) -> None:
        self.app.close()

    def dispatch(self, job_id: str, stage: str) -> None:
        self.app.send_task(RUN_STAGE, args=[job_id, stage], queue=QUEUE_FOR_STAGE[stage], retry=False)

    def dispatch_delivery(self, delivery_id: str) -> None:
        self.app.send_task(DELIVER_WEBHOOK, args=[delivery_id], queue="webhooks", retry=False)


def run_worker(services, queues: list[str], name: str | None = None) -> None:
    """Serve the given queues until stopped (SIGTERM finishes the current stage first)."""
    from celery import signals

    settings = services.settings
    engine = services.engine  # fails early and clearly on an unmigrated database
    for folder in remove_stale_scratch(services):
        log.warning("removed %s: left by a worker that stopped mid-stage", folder)
    app = celery_app(settings)  # consumes, retrying the broker as long as it takes
    dispatcher = CeleryDispatcher(services)  # hands stages on, failing fast (the sweeper retries)
    worker = name or worker_name("+".join(queues))

    @app.task(name=RUN_STAGE, bind=True)
    def run(task, job_id: str, stage: str) -> None:
        try:
            run_stage(services, job_id, stage, worker=worker, dispatch=dispatcher.dispatch)
        except SQLAlchemyError as exc:  # the database is away: try this message again shortly
            raise task.retry(exc=exc, countdown=10, max_retries=None) from None

    @app.task(name=DELIVER_WEBHOOK)
    def deliver_webhook(delivery_id: str) -> None:
        from service.webhooks import deliver

        deliver(services, delivery_id)  # if the database is away, its claim runs out and it is dispatched again

    stopping = threading.Event()
    periodic = PeriodicWork(services, dispatcher.dispatch_delivery)

    def sweep_forever() -> None:
        while not stopping.wait(max(0.5, settings.lease_seconds / 2)):
            try:
                sweep(engine, dispatcher.dispatch, settings.max_attempts)
            except Exception as exc:  # the database or broker is away for a moment; try again next round
                log.warning("job sweep failed: %s", exc)

    @signals.worker_ready.connect(weak=False)
    def start_sweeper(**_) -> None:
        threading.Thread(target=sweep_forever, name="headshot-sweeper", daemon=True).start()
        periodic.start()

    @signals.worker_shutdown.connect(weak=False)
    def stop_sweeper(**_) -> None:
        stopping.set()
        periodic.stop()

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
