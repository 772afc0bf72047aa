"""Test packets sent by operators from the test page through the VTP broker."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from alert_manager import strategies
from alert_manager.voevent import VOEventRejected

log = logging.getLogger("pyros.alert_manager")

# --- Test packets (operators) -------------------------------------------------------------------


def packet_send_to_broker(*, raw: bytes, fresh: bool = True, to_zenith: bool = False, host: str = "127.0.0.1",
                     port: int | None = None):  # noqa: ANN201 - vtp.VTPResponse
    """Send a packet through the real Comet broker (VTP), as a mission would.

    ``fresh``: new IVORN, trigger id and current time (see packet_rewrite); ``to_zenith``: move its position
    near the zenith of the active site, so that the simulated telescope can point at it now.
    Raises VOEventRejected (the packet cannot be rewritten) or vtp.VTPError (broker unreachable)."""
    from alert_manager.packet_rewrite import as_fresh_burst
    from alert_manager.vtp import send_voevent

    now = timezone.now()
    if fresh or to_zenith:
        ra = dec = None
        if to_zenith:
            site = strategies.active_site()
            if site is None:
                raise VOEventRejected("no active site to point at")
            ra, dec = zenith_ra_dec(site=site, when=now)
        raw = as_fresh_burst(raw, now=now, ra_deg=ra, dec_deg=dec)
    response = send_voevent(host, port or settings.PYROS_COMET_PORT, raw, timeout_s=10.0)
    log.info("test packet sent to Comet: %s (%s)", "ack" if response.ack else "refused", response.message)
    return response


def zenith_ra_dec(*, site, when: datetime) -> tuple[float, float]:  # noqa: ANN001 - Site
    """(RA, Dec) in degrees near the site's zenith (mean sidereal time is precise enough to point near it)."""
    from sky.astro import to_time, u

    lst_deg = to_time(when).sidereal_time("mean", longitude=site.longitude_deg * u.deg).deg
    return lst_deg % 360.0, max(-89.0, min(89.0, site.latitude_deg))


def packet_publish_to_kafka(*, raw: bytes, topic: str, bootstrap: str | None = None) -> tuple[int, int]:
    """Publish a message (bytes unchanged) to the local Kafka cluster of PYROS_KAFKA_BOOTSTRAP, as a drill:
    the alert-kafka process consumes it like a GCN notice. Returns (partition, offset); raises
    KafkaPublishError (or ValueError when no cluster is configured) with the reason."""
    from alert_manager.kafka_consumer import publish

    bootstrap = bootstrap if bootstrap is not None else settings.PYROS_KAFKA_BOOTSTRAP
    if not bootstrap:
        raise ValueError("no local Kafka cluster: set PYROS_KAFKA_BOOTSTRAP (GCN's own brokers are never written to)")
    ((partition, offset),) = publish(bootstrap, topic, [raw], timeout=10.0)
    log.info("test message published to %s %s[%d]@%d (%d bytes)", bootstrap, topic, partition, offset, len(raw))
    return partition, offset
