"""manage.py alerts_replay FILE... --topic T: publish stored messages, bytes unchanged, to the Kafka cluster of
PYROS_KAFKA_BOOTSTRAP (drills and tests; GCN's own brokers are never written to)."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from alert_manager.kafka_consumer import KafkaPublishError, publish


class Command(BaseCommand):
    help = "Publish alert messages (files, bytes unchanged) to the local Kafka cluster of PYROS_KAFKA_BOOTSTRAP."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("files", nargs="+", help="message files (VOEvent XML or JSON notices)")
        parser.add_argument("--topic", required=True, help="e.g. gcn.notices.einstein_probe.wxt.alert")
        parser.add_argument("--bootstrap", default=os.environ.get("PYROS_KAFKA_BOOTSTRAP", ""),
                            help="host:port of the cluster (default: $PYROS_KAFKA_BOOTSTRAP)")

    def handle(self, *args, files: list[str], topic: str, bootstrap: str, **options) -> None:
        if not bootstrap:
            raise CommandError("no cluster: set PYROS_KAFKA_BOOTSTRAP (host:port of a local or partner cluster) "
                               "or pass --bootstrap; `python -m alert_manager.kafka_mock` starts a local one")
        if not topic.strip() or any(c.isspace() for c in topic):
            raise CommandError(f"invalid topic {topic!r}")
        values = []
        for name in files:
            path = Path(name)
            if not path.is_file():
                raise CommandError(f"no such file: {name}")
            values.append(path.read_bytes())
        try:
            positions = publish(bootstrap, topic, values)
        except KafkaPublishError as exc:
            raise CommandError(f"not published: {exc}") from exc
        for name, (partition, offset) in zip(files, positions, strict=True):
            self.stdout.write(f"{name} -> {topic}[{partition}]@{offset}")
        self.stdout.write(self.style.SUCCESS(f"{len(values)} message(s) published to {bootstrap}"))
