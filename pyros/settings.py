"""PyROS settings. Everything that differs between machines comes from the environment; the
defaults are the embedded ones (SQLite, a file-system Celery broker, the built-in INDI simulators),
so `make run` works on a bare machine. The README lists every variable."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from pyros.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PYROS_VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", True)


def _secret_key() -> str:
    key = env_str("SECRET_KEY", "")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    # Local use: generate once and keep it under var/ so sessions survive restarts.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_bootstrap5",
    "axes",  # login lockout after repeated failures (issue #16)
    "pyrosapp",
    "common",
    "user_manager",
    "routine_manager",
    "scheduler",
    "alert_manager",
    "majordome",
    "observation_manager",
    "monitoring",
    "analyzer",
    "procedures",
    "dashboard",
    "pyros",  # the project itself: demo seeding (manage.py seed_demo)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "common.error_pages.ErrorPageMiddleware",  # the site's error pages, never Django's debug pages
    "common.middleware.RejectNulBytesMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "user_manager.middleware.LoginRequiredMiddleware",
    "axes.middleware.AxesMiddleware",  # last: answers a locked-out login with the lockout page
]

ROOT_URLCONF = "pyros.urls"
WSGI_APPLICATION = "pyros.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.context_processors.pyros",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'pyros.sqlite3'}"),
        conn_max_age=env_int("PYROS_DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,  # a connection kept across a database restart is checked before reuse
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Tests that run real workers in subprocesses need the test database in a file they can open.
    # One file per test run (the pid), so concurrent runs in one checkout do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-pyros-{os.getpid()}.sqlite3")}
    # Several processes (web, workers, beat, Comet) share one SQLite file: wait for locks
    # instead of failing, and use WAL so readers do not block the writer.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
         "transaction_mode": "IMMEDIATE"}
    )

AUTH_USER_MODEL = "pyrosapp.User"
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "user_manager.backends.ValidatedAccountBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# --- Abuse limits (issue #16: 40 wrong logins in 15 s were followed by a successful one) ---
# django-axes: after PYROS_LOGIN_FAILURE_LIMIT wrong passwords for one e-mail from one address, that pair
# is locked out for PYROS_LOGIN_COOLOFF_MIN minutes (429 and a page saying until when); a success resets.
AXES_FAILURE_LIMIT = env_int("PYROS_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_float("PYROS_LOGIN_COOLOFF_MIN", 15.0) / 60.0  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_FORM_FIELD = "username"  # the login form's e-mail field
AXES_USERNAME_CALLABLE = "user_manager.views.login_email"  # the e-mail, lower-cased as the form does
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "user_manager.views.locked_out"
AXES_VERBOSE = False
AXES_ENABLE_ACCESS_FAILURE_LOG = False
# Password-reset e-mails: at most this many per address (and per client address) per hour; more are
# silently not sent (the page does not tell whether an account exists). Registrations per client address.
PYROS_PASSWORD_RESET_PER_HOUR = env_int("PYROS_PASSWORD_RESET_PER_HOUR", 3)
PYROS_REGISTRATIONS_PER_HOUR = env_int("PYROS_REGISTRATIONS_PER_HOUR", 5)
# Counters of the limits above and of the API throttles: a file cache every process of the machine
# shares (gunicorn workers, Celery); a shared cache (Redis, memcached) for several machines.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                "LOCATION": str(VAR_DIR / "cache"), "OPTIONS": {"MAX_ENTRIES": 20000}},
}
# Django's debug pages (tracebacks, settings) are never shown, DEBUG or not; a developer may want them.
PYROS_DEBUG_PAGES = env_bool("PYROS_DEBUG_PAGES", False)
CSRF_FAILURE_VIEW = "common.error_pages.csrf_failure"

LOGIN_URL = "user_manager:login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "user_manager:login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
# Django's own date formatting (the backoffice's lists) as on PyROS's pages: '2026-12-04 23:41:07 UTC'.
FORMAT_MODULE_PATH = ["common.locale_formats"]
USE_I18N = False
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
def _plotly_js_dir() -> str:
    # plotly.min.js ships inside the pinned `plotly` wheel: serve it from there (no CDN, no copy in git).
    import plotly

    return str(Path(plotly.__file__).parent / "package_data")


STATICFILES_DIRS = [BASE_DIR / "static", ("vendor/plotly", _plotly_js_dir())]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG

# Images (FITS, quick-looks, calibration masters) live under the data directory.
PYROS_DATA_DIR = Path(env_str("PYROS_DATA_DIR", str(VAR_DIR / "data"))).resolve()
MEDIA_ROOT = PYROS_DATA_DIR

# The analyzer's reference catalogue, chosen like TOM Toolkit's facilities: a registry of classes and
# the one in use with its options (analyzer/catalogs.py; README "The analyzer on real skies").
PYROS_CATALOG_CLASSES = {
    "simulated": "devices.catalogs.SimulatedSkyCatalog",
    "local": "devices.catalogs.LocalCatalogFile",
    "gaia-dr3": "devices.catalogs.GaiaDR3Catalog",
}
_catalog_name = env_str("PYROS_CATALOG", "simulated")
PYROS_REFERENCE_CATALOG = {
    "NAME": _catalog_name,
    "OPTIONS": {
        "local": {"path": env_str("PYROS_CATALOG_PATH", "")},
        "gaia-dr3": {"cache_dir": env_str("PYROS_CATALOG_CACHE_DIR", str(VAR_DIR / "catalog-cache"))},
    }.get(_catalog_name, {}),
}
# astrometry.net index files for blind solving (empty: off). Debian's astrometry-data-* packages
# install theirs in /usr/share/astrometry.
PYROS_ASTROMETRY_INDEX_DIR = env_str("PYROS_ASTROMETRY_INDEX_DIR", "")
# Known moving objects removed from afterglow candidates: "" (none) or "skybot" (IMCCE SkyBoT, online).
PYROS_EPHEMERIS = env_str("PYROS_EPHEMERIS", "")

# E-mail: to the console by default, with password-reset links redacted (the console is a log) and each whole
# message in a file under var/mail/ (common.mail); PYROS_EMAIL_FILE_PATH writes files only, into that folder.
_email_dir = env_str("PYROS_EMAIL_FILE_PATH", "")
if env_str("EMAIL_HOST", ""):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = env_str("EMAIL_HOST", "")
    EMAIL_PORT = env_int("EMAIL_PORT", 25)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
    EMAIL_TIMEOUT = 10  # seconds: a notification task must not hang on a dead SMTP server
elif _email_dir:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = _email_dir
else:
    EMAIL_BACKEND = "common.mail.ConsoleEmailBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "pyros@localhost")
# Where the recipients of notifications reach PyROS (links in e-mails and webhooks).
PYROS_SITE_URL = env_str("PYROS_SITE_URL", "http://127.0.0.1:8000")

# --- Production hardening (active when DEBUG is off; `manage.py check --deploy` is clean) ---
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("PYROS_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("PYROS_SECURE_COOKIES", True)
    SECURE_SSL_REDIRECT = env_bool("PYROS_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("PYROS_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- REST API ---
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"],
    "EXCEPTION_HANDLER": "common.api.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["common.throttles.AnonThrottle", "common.throttles.UserThrottle"],
}
# Per account and per anonymous address. The dashboard polls about twice a second per open page.
PYROS_API_THROTTLE_RATES = {
    "user": env_str("PYROS_API_RATE_USER", "1200/min"),
    "anon": env_str("PYROS_API_RATE_ANON", "60/min"),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "PyROS API",
    "DESCRIPTION": "Observation requests, schedule, alerts and observatory control of PyROS.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {"AlertEventStatusEnum": "pyrosapp.models.alerts.AlertEvent.Status"},
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "/static/pyros/favicon.svg",  # drf-spectacular's default is on a CDN
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "common.api.postprocess_schema"],
}

# --- Celery (one app in pyros/celery.py; queues and routes there) ---
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.05,
    }
    _default_results = f"file://{VAR_DIR / 'celery-results'}"
    (VAR_DIR / "celery-results").mkdir(parents=True, exist_ok=True)
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {}
    _default_results = "rpc://"
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", _default_results)
# Celery's Django fixup closes every database connection before and after each task unless this is set:
# a new PostgreSQL connection per task (measured 3.8 ms on the alert path, plus a backend started by the
# server each time). Tasks keep their thread's connection; pyros/celery.py closes the unusable or obsolete
# ones around each task, as Django does around each request (CONN_MAX_AGE, CONN_HEALTH_CHECKS).
CELERY_DB_REUSE_MAX = 1_000_000_000

# --- Observatory ---
PYROS_WEB_PORT = env_int("PYROS_WEB_PORT", 8000)
PYROS_WEB_HOST = env_str("PYROS_WEB_HOST", "127.0.0.1")
PYROS_COMET_PORT = env_int("PYROS_COMET_PORT", 8098)
# GCN Kafka topics fixed by the environment (empty: operators choose them on the Alert streams page).
PYROS_KAFKA_TOPICS_ENV = env_str("PYROS_KAFKA_TOPICS", "")
# A plain local or partner Kafka cluster (the test page publishes there; the intake reads it instead of GCN).
PYROS_KAFKA_BOOTSTRAP = env_str("PYROS_KAFKA_BOOTSTRAP", "")
PYROS_COMET_REMOTES = env_list("PYROS_COMET_REMOTES", [])
PYROS_INDI_HOST = env_str("PYROS_INDI_HOST", "127.0.0.1")
PYROS_INDI_PORT = env_int("PYROS_INDI_PORT", 7624)
# Device backends per kind: PYROS_DEVICE_BACKEND, PYROS_<KIND>_BACKEND, PYROS_ALPACA_* are read from the environment
# by devices.observatory; the backoffice's "Device backends" override them per kind (pyrosapp.DeviceConfiguration).
# The backoffice's "Discover Alpaca devices" page asks on this UDP port (32227 in the Alpaca standard).
PYROS_ALPACA_DISCOVERY_PORT = env_int("PYROS_ALPACA_DISCOVERY_PORT", 32227)
PYROS_SIMULATOR_SPEED = env_float("PYROS_SIMULATOR_SPEED", 1.0)
PYROS_DEMO_SITE = env_str("PYROS_DEMO_SITE", "")
PYROS_REQUIRE_SERVICES = env_bool("PYROS_REQUIRE_SERVICES", False)
PYROS_LOG_LEVEL = env_str("PYROS_LOG_LEVEL", "INFO")
PYROS_LOG_RETENTION_DAYS = env_int("PYROS_LOG_RETENTION_DAYS", 30)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"console": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}},
    "filters": {"redact_secrets": {"()": "common.logging.RedactSecretsFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "console", "filters": ["redact_secrets"]},
        "database": {"class": "common.logging.DatabaseLogHandler", "level": "INFO"},
    },
    "loggers": {
        "pyros": {"handlers": ["console", "database"], "level": PYROS_LOG_LEVEL, "propagate": False},
        "django": {"handlers": ["console"], "level": "WARNING"},
        "celery": {"handlers": ["console"], "level": "INFO", "propagate": False},  # not twice (root)
    },
}

# --- Safety (monitoring) and the majordome's rhythm ---
PYROS_SAFETY_LIMITS = {
    "max_wind_m_s": env_float("PYROS_SAFETY_MAX_WIND_M_S", 15.0),
    "max_gust_m_s": env_float("PYROS_SAFETY_MAX_GUST_M_S", 20.0),
    "max_humidity_pct": env_float("PYROS_SAFETY_MAX_HUMIDITY_PCT", 90.0),
    "max_rain_mm_h": env_float("PYROS_SAFETY_MAX_RAIN_MM_H", 0.0),
    "max_cloud_cover_pct": env_float("PYROS_SAFETY_MAX_CLOUD_PCT", 70.0),
    # No weather reading newer than this is unsafe (PANOPTES POCS uses 180 s).
    "stale_after_s": env_float("PYROS_SAFETY_STALE_S", 180.0),
}
# Conditions must stay good this long before reopening (ACP's default is 10 minutes).
PYROS_SAFETY_HOLD_S = env_float("PYROS_SAFETY_HOLD_S", 600.0)
PYROS_MONITORING_PERIOD_S = env_float("PYROS_MONITORING_PERIOD_S", 1.0)
PYROS_MAJORDOME_TICK_S = env_float("PYROS_MAJORDOME_TICK_S", 5.0)
PYROS_HISTORY_EVERY_S = env_float("PYROS_HISTORY_EVERY_S", 30.0)
PYROS_EXECUTOR_STALE_S = env_float("PYROS_EXECUTOR_STALE_S", 20.0)
# Issue #15: enforced safety, the safety process and the dead-man watchdog, replans when the world changes.
# The observatory's watchdog parks and closes by itself when PyROS's heartbeat stops for this long.
PYROS_WATCHDOG_S = env_float("PYROS_WATCHDOG_S", 60.0)
# No poll stored for this long: the safety process is presumed dead, the observatory is unsafe.
PYROS_SAFETY_LOOP_STALE_S = env_float("PYROS_SAFETY_LOOP_STALE_S", 30.0)
# Dotted path of a callable hook(event, alarm) told when the safety alarm is raised or cleared.
PYROS_SAFETY_ALARM_HOOK = env_str("PYROS_SAFETY_ALARM_HOOK", "")
# The request editor's name resolution asks CDS Sesame when a name is not in PyROS's own list (off: offline only).
PYROS_NAME_RESOLVER_ONLINE = env_bool("PYROS_NAME_RESOLVER_ONLINE", True)
# A sequence that ends this much earlier or later than planned asks for a new plan.
PYROS_REPLAN_DRIFT_S = env_float("PYROS_REPLAN_DRIFT_S", 120.0)
# Sequences waiting, none due: the tick asks for a new plan at most this often.
PYROS_IDLE_REPLAN_S = env_float("PYROS_IDLE_REPLAN_S", 60.0)
# Issue #18: operator procedures and their queue (procedures/). The folder of procedure modules (Detect
# changes / Reload read it), the manager's poll period, and how long an item may ignore an abort before its
# worker is killed.
PYROS_PROCEDURES_DIR = Path(env_str("PYROS_PROCEDURES_DIR", str(BASE_DIR / "procedures" / "library"))).resolve()
PYROS_QUEUE_POLL_S = env_float("PYROS_QUEUE_POLL_S", 0.1)
PYROS_QUEUE_ABORT_GRACE_S = env_float("PYROS_QUEUE_ABORT_GRACE_S", 10.0)
