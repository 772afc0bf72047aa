import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pyros.settings")
application = get_wsgi_application()

# Django imports the URLconf (and with it every app's views, the scheduler and astropy) on the first request a
# worker serves: that request waited ~1.4 s (bench_procedures: the CLI's first call on the second worker). Each
# gunicorn worker imports it here, before it accepts a connection.
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns  # noqa: B018 - the import is the point
# What is imported lives as long as the worker: out of the collector's generations, full collections stay short.
gc.collect()
gc.freeze()
