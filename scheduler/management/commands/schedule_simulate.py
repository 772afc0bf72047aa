"""``python manage.py schedule_simulate FILE --output OUT.json``: plan a night from a JSON file, no database."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scheduler.simulate import NightFileError, simulate_night_file


class Command(BaseCommand):
    help = (
        "Plan one night from a JSON file in the format of ../shared/data/scheduling/set_N*.json and write "
        '{"metrics": ..., "schedule": [...], "rejected": {...}} (no database is used).'
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the night: site, night bounds, slew model and sequences")
        parser.add_argument("--output", "-o", help="write the result here (default: standard output)")

    def handle(self, *args, file: str, output: str | None = None, **options) -> None:
        try:
            result = simulate_night_file(file)
        except NightFileError as exc:
            raise CommandError(str(exc)) from exc
        text = json.dumps(result, indent=1)
        if output:
            Path(output).write_text(text + "\n", encoding="utf-8")
            metrics = result["metrics"]
            self.stdout.write(
                f"{metrics['scheduled']} sequences planned, priority sum {metrics['priority_sum']}, "
                f"occupancy {metrics['occupancy']:.3f}, in {metrics['wall_s']:.3f} s -> {output}"
            )
        else:
            self.stdout.write(text)
