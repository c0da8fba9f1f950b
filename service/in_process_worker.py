"""The default dispatcher of job stages: a thread in the service process (Celery workers: service/worker.py)."""

import logging
import queue
import threading

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from service.background import PeriodicWork
from service.jobs import sweep, worker_name
from service.stages import remove_stale_scratch, run_stage
from service.tables import Job

log = logging.getLogger("headshot.jobs")


class InProcessWorker:
    """The default dispatcher: one thread in the service process runs every stage, in dispatch order.

    Stages dispatched to it live in memory, so at start it dispatches every queued job again (a claim
    that loses to another process is a no-op). Between stages it sweeps for expired leases. Webhook
    deliveries and audit anchors run beside it (service/background.py), never on its thread.
    """

    def __init__(self, services):
        self.services = services
        self.settings = services.settings
        self.worker = worker_name("in-process")
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        remove_stale_scratch(self.services)
        with Session(self.services.engine) as session:
            queued = session.exec(select(Job.id, Job.stage).where(Job.status == "queued")).all()
        for job_id, stage in queued:
            self.dispatch(job_id, stage)
        self._thread = threading.Thread(target=self._work, name="headshot-jobs", daemon=True)
        self._thread.start()
        self._periodic = PeriodicWork(self.services)  # webhook deliveries and audit anchors, on threads of their own
        self._periodic.start()

    def stop(self) -> None:
        if self._thread:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._periodic.stop()

    def dispatch(self, job_id: str, stage: str) -> None:
        self._queue.put((job_id, stage))

    def _work(self) -> None:
        interval = max(0.5, self.settings.lease_seconds / 2)
        while True:
            try:
                item = self._queue.get(timeout=interval)
            except queue.Empty:
                self._sweep()
                continue
            if item is None:
                return
            run_stage(self.services, *item, worker=self.worker, dispatch=self.dispatch)

    def _sweep(self) -> None:
        try:
            sweep(self.services.engine, self.dispatch, self.settings.max_attempts)
        except SQLAlchemyError as exc:
            log.warning("job sweep failed: %s", exc)
