"""Alert streams, as operators configure them: the GCN Kafka topics to subscribe to."""

from __future__ import annotations

import logging

from pyrosapp.models import AlertStreamHealth

log = logging.getLogger("pyros.alert_manager")


def kafka_topics_choose(*, topics: list[str], by=None) -> list[str]:  # noqa: ANN001
    """Store the operators' topic choice; the alert-kafka process re-subscribes when it sees it change
    (unless PYROS_KAFKA_TOPICS fixes the topics)."""
    row, _ = AlertStreamHealth.objects.get_or_create(source="kafka")
    AlertStreamHealth.objects.filter(pk=row.pk).update(topics=list(topics))
    log.info("GCN Kafka topics chosen by %s: %s", by, ", ".join(topics))
    return list(topics)
