from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from pyros.demo import seed_demo


class Command(BaseCommand):
    help = "Create (or refresh) the demo observatory, program and accounts. Safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--site", default=None, help="A fixed real site (overrides PYROS_DEMO_SITE)")

    def handle(self, *args, **options):
        key = options["site"] if options["site"] is not None else settings.PYROS_DEMO_SITE
        try:
            seed = seed_demo(site_key=key)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        s = seed.site
        self.stdout.write(f"Demo site: {s.name} (lat {s.latitude_deg:.4f}, lon {s.longitude_deg:.4f}, {s.elevation_m:.0f} m)")
        self.stdout.write("Demo accounts:")
        for role, (email, password) in seed.credentials.items():
            self.stdout.write(f"  {role:<14} {email:<26} password: {password}")
