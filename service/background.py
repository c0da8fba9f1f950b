"""What every worker process runs beside its job stages, on a thread of its own: once a second it hands the
webhook deliveries that are due to a sender (service/webhooks.py), and every HEADSHOT_AUDIT_ANCHOR_SECONDS,
when HEADSHOT_TIMESTAMP_URL names an authority, it has the audit chain's head time-stamped
(service/audit_anchor.py). Both are safe to run in every process at once."""

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("headshot.background")
POLL_SECONDS = 1.0
DISPATCH_CLAIM_SECONDS = 60.0  # a dispatched delivery nobody started is dispatched again after this
IN_PROCESS_SENDERS = 4


class PeriodicWork:
    """`send_delivery(delivery_id)` hands a delivery on (to Celery); without it, deliveries are sent by a
    pool of threads of this process (the in-process worker)."""

    def __init__(self, services, send_delivery: Callable[[str], None] | None = None):
        self.services = services
        self.settings = services.settings
        self._senders = None
        if send_delivery is None:
            self._senders = ThreadPoolExecutor(IN_PROCESS_SENDERS, thread_name_prefix="headshot-webhook")
        self.send_delivery = send_delivery or self._send_here
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="headshot-periodic", daemon=True)
        self._next_anchor = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self._senders is not None:
            self._senders.shutdown(wait=False, cancel_futures=True)

    def run_once(self) -> None:
        from service.audit_anchor import anchor_if_due
        from service.webhooks import dispatch_due

        engine = self.services.engine
        dispatch_due(engine, self.send_delivery, DISPATCH_CLAIM_SECONDS + self.settings.webhook_timeout_seconds)
        if self.settings.timestamp_url and time.monotonic() >= self._next_anchor:
            period = self.settings.audit_anchor_seconds
            try:
                anchor_if_due(engine, self.settings.timestamp_url, period)
                self._next_anchor = time.monotonic() + min(period, 60.0)
            except Exception as exc:  # the authority is away: try again in a while, keep delivering meanwhile
                log.warning("could not anchor the audit chain: %s", exc)
                self._next_anchor = time.monotonic() + min(period, 300.0)

    def _send_here(self, delivery_id: str) -> None:
        from service.webhooks import deliver

        self._senders.submit(deliver, self.services, delivery_id)

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.run_once()
            except Exception as exc:  # the database is away for a moment: next round
                log.warning("periodic work failed: %s", exc)
