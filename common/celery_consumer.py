"""The consumer of PyROS's Celery workers: back on the broker within a second of its return.

Celery's consumer reconnects after a lost broker connection with kombu's default back-off (2, 4, 6 ... 30 s
between attempts): a broker back after a 7 s restart was reached only 5 s later, a longer outage up to 30 s
later (alerts stored meanwhile waited that long; see ``alert_manager/tests/test_broker_faults.py``). Here every
attempt is at most ``RECONNECT_EVERY_S`` apart, for as long as it takes (``broker_connection_max_retries``
is None in ``pyros/celery.py``: a worker, the safety process above all, never gives up on the broker). An
attempt on loopback costs a refused connection; the log line of each failed attempt is Celery's own.
"""

from __future__ import annotations

from celery.worker.consumer import Consumer as CeleryConsumer

RECONNECT_FIRST_S = 0.25
RECONNECT_EVERY_S = 1.0


class Consumer(CeleryConsumer):
    """Celery's consumer with a reconnection interval of at most ``RECONNECT_EVERY_S``."""

    def ensure_connected(self, conn):  # noqa: ANN001, ANN201 - Celery's signature
        ensure = conn.ensure_connection

        def ensure_often(errback=None, max_retries=None, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
            kwargs.update(interval_start=RECONNECT_FIRST_S, interval_step=RECONNECT_EVERY_S,
                          interval_max=RECONNECT_EVERY_S)
            return ensure(errback, max_retries, **kwargs)

        conn.ensure_connection = ensure_often
        try:
            return super().ensure_connected(conn)
        finally:
            del conn.ensure_connection  # the method of the class again
