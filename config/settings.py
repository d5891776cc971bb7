"""Switchboard settings.

Every value comes from the environment (twelve-factor) and has a default for the embedded deployment:
SQLite in WAL mode, an in-memory channel layer and django-q2's ORM broker. Setting ``DATABASE_URL`` and
``REDIS_URL`` switches to PostgreSQL, channels-redis and the django-q2 Redis broker. The README's
configuration table lists every variable.
"""

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False) if (BASE_DIR / ".env").exists() else None

DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / "data")))
DATA_DIR.mkdir(parents=True, exist_ok=True)

# Prometheus metrics are shared by the ASGI server and the queue workers through files in this folder;
# prometheus_client reads the variable when it is first imported, so it is set here, before any import.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default=str(DATA_DIR / "metrics"))
Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR

SECRET_KEY = env.str("SECRET_KEY", default="switchboard-embedded-dev-key-change-me-in-production-0123456789")
# Earlier secret keys, while signed sessions, tickets and secrets encrypted under them are moved over.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list(
    "CSRF_TRUSTED_ORIGINS", default=["http://127.0.0.1:8000", "http://localhost:8000"]
)

INSTALLED_APPS = [
    "daphne",
    "core.apps.SwitchboardAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_q",
    "django_htmx",
    "core",
    "sessions_app",
    "tools_app",
    "history_app",
    "web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'switchboard.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the ASGI server and the queue cluster read while the other writes; IMMEDIATE transactions
    # take the write lock up front so concurrent writers wait (busy timeout) instead of failing mid-way.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file, not :memory:, so end-to-end tests can share the test database with real server processes.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test_switchboard.sqlite3")}
elif env.int("DB_POOL_MAX_SIZE", default=10) > 0:
    # A connection pool per process (psycopg_pool, Django's built-in support): Django serves each ASGI
    # request on a thread of its own, so without one every request and every queue task paid for a new
    # PostgreSQL connection (several ms). Forked queue workers start pools of their own (core.db).
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
        "max_size": env.int("DB_POOL_MAX_SIZE", default=10),
        "timeout": env.float("DB_POOL_TIMEOUT_SECONDS", default=30.0),
    }
else:  # DB_POOL_MAX_SIZE=0: no pool; connections as Django makes them
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=0))
if "postgresql" in DATABASES["default"]["ENGINE"] and env.bool("DB_PREPARED_STATEMENTS", default=True):
    # Parameters bound on the server, and a statement run a few times on a connection prepared there, so
    # PostgreSQL stops planning it again each time (0.1-0.8 ms a statement on this app's joins; a posted
    # message's path runs about fifteen). Off behind a pooler that cannot keep prepared statements
    # (PgBouncer in transaction mode before 1.21).
    DATABASES["default"].setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
IS_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"

# --- Redis: channel layer, queue broker and cache ----------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # No socket timeout: channels-redis listens with a 5 s blocking pop, and redis-py's default 5 s
            # read timeout made every listener idle for 5 s fail ("Timeout reading"); its timed writes also
            # swallow a cancellation on Python 3.11 (asyncio.wait_for), so consumers outlived their clients.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                "capacity": 1500,
                "expiry": 30,
            },
        }
    }
    # django-redis, not Django's own RedisCache: under ASGI each request gets its own cache object, and
    # Django's makes a connection pool (a new Redis connection) per object; django-redis shares one pool
    # per process, so the rate limit check of every API request does not connect to Redis first.
    CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # The database cache is shared by the server and the queue cluster, unlike a per-process memory cache.
    # It holds short-lived entries only (rate-limit windows, used stream tickets). Past MAX_ENTRIES every
    # write culls the expired entries and then a third of the live ones, so the default of 300 dropped
    # live entries under ordinary use: a used ticket forgotten within its minute could open a second
    # stream. At this size only the expired ones go.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "switchboard_cache",
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }

Q_CLUSTER = {
    "name": env.str("Q_CLUSTER_NAME", default="switchboard"),
    "workers": env.int("Q_WORKERS", default=4),  # each worker streams one run at a time
    "timeout": env.int("Q_TASK_TIMEOUT", default=600),
    "retry": env.int("Q_TASK_TIMEOUT", default=600) + 60,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "poll": env.float("Q_POLL", default=0.05),
    # Successful tasks are not kept: a run's row is its record. (django-q2 prunes kept successes by
    # locking and loading every one of them after each task, so keeping N costs O(N) per task.)
    "save_limit": -1,
    "label": "Queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# --- Auth, i18n, static --------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").exists() else []
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(DATA_DIR / "media")))
MEDIA_URL = "media/"

# --- REST API ------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.DefaultCursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "EXCEPTION_HANDLER": "core.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["core.api.throttling.ApiRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": env.str("API_RATE_LIMIT", default="6000/min")},
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Switchboard API",
    "DESCRIPTION": "Multi-tenant platform for running AI agent sessions.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "DEFAULT_GENERATOR_CLASS": "core.api.schema.SwitchboardSchemaGenerator",
    # Choice sets that share a field name ("role", "status") get enums named after what they are.
    "ENUM_NAME_OVERRIDES": {
        "MembershipRoleEnum": "core.models.Role",
        "MessageRoleEnum": "sessions_app.models.MessageRole",
        "SessionStatusEnum": "sessions_app.models.SessionStatus",
    },
}

# --- Switchboard -----------------------------------------------------------------------------------------
ENCRYPTION_KEYS = env.list("ENCRYPTION_KEYS", default=[])
# LLM defaults when an organization has no provider credentials: the offline demo model unless set.
LLM_PROVIDER = env.str("LLM_PROVIDER", default="demo")  # demo | openai | azure | compatible
LLM_BASE_URL = env.str("LLM_BASE_URL", default="")
LLM_API_KEY = env.str("LLM_API_KEY", default="")
LLM_API_VERSION = env.str("LLM_API_VERSION", default="2024-10-21")
LLM_DEFAULT_MODEL = env.str("LLM_DEFAULT_MODEL", default="demo")
LLM_TIMEOUT_SECONDS = env.float("LLM_TIMEOUT_SECONDS", default=60.0)
LLM_MAX_RETRIES = env.int("LLM_MAX_RETRIES", default=2)
LLM_RETRY_AFTER_MAX_SECONDS = env.float("LLM_RETRY_AFTER_MAX_SECONDS", default=30.0)
DEMO_TOKEN_DELAY_MS = env.int("DEMO_TOKEN_DELAY_MS", default=30)
# Runs: lease and heartbeat of a worker on a run, retries after a lost worker, streaming coalescing.
RUN_LEASE_SECONDS = env.int("RUN_LEASE_SECONDS", default=30)
RUN_MAX_ATTEMPTS = env.int("RUN_MAX_ATTEMPTS", default=3)
RUN_MAX_TOOL_ROUNDS = env.int("RUN_MAX_TOOL_ROUNDS", default=8)
STREAM_FLUSH_MS = env.int("STREAM_FLUSH_MS", default=40)
STATELESS_WAIT_SECONDS = env.float("STATELESS_WAIT_SECONDS", default=120.0)
# How often a stream checks the event log for events the channel layer did not bring (other processes
# on the in-memory layer, or a dropped push on Redis).
EVENT_POLL_SECONDS = env.float("EVENT_POLL_SECONDS", default=1.0 if REDIS_URL else 0.05)
SSE_HEARTBEAT_SECONDS = env.float("SSE_HEARTBEAT_SECONDS", default=15.0)
WS_TICKET_SECONDS = env.int("WS_TICKET_SECONDS", default=60)
# An open websocket or SSE stream checks its caller's access again this often (and a websocket before
# every command): a revoked key or a removed member is cut off.
STREAM_ACCESS_RECHECK_SECONDS = env.float("STREAM_ACCESS_RECHECK_SECONDS", default=30.0)
IDEMPOTENCY_TTL_HOURS = env.int("IDEMPOTENCY_TTL_HOURS", default=24)
EXPORT_RETENTION_HOURS = env.int("EXPORT_RETENTION_HOURS", default=168)  # 0 keeps export files forever
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
API_KEY_CACHE_SECONDS = env.int("API_KEY_CACHE_SECONDS", default=300)
MESSAGE_MAX_CHARS = env.int("MESSAGE_MAX_CHARS", default=100_000)
# A request body (files of a multipart body aside) past this size is a 413. A message of MESSAGE_MAX_CHARS
# characters must fit however it is encoded: JSON's \ud83d\ude00 escapes take 12 bytes for one character.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(2_621_440, MESSAGE_MAX_CHARS * 12 + 65_536)
SESSION_IDLE_TIMEOUT_MINUTES = env.int("SESSION_IDLE_TIMEOUT_MINUTES", default=60)
APPROVAL_TIMEOUT_SECONDS = env.int("APPROVAL_TIMEOUT_SECONDS", default=3600)
# History: attachments (size per file, files per message, allowed types; empty = every analysable type),
# imports (largest JSONL file accepted) and how long computed statistics stay cached.
ATTACHMENT_MAX_BYTES = env.int("ATTACHMENT_MAX_BYTES", default=10 * 1024 * 1024)
ATTACHMENT_MAX_FILES = env.int("ATTACHMENT_MAX_FILES", default=10)
ATTACHMENT_ALLOWED_TYPES = env.list("ATTACHMENT_ALLOWED_TYPES", default=[])
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=50 * 1024 * 1024)
STATISTICS_CACHE_SECONDS = env.int("STATISTICS_CACHE_SECONDS", default=3600)
# Search ranks at most this many matches of a query (more: the page is marked approximate).
SEARCH_RANK_CANDIDATES = env.int("SEARCH_RANK_CANDIDATES", default=1000)
# Execution sessions (persistent shell/python interpreters in a bubblewrap sandbox): off by default, then
# for organization admins only. ALLOW_UNSAFE runs them WITHOUT isolation when bubblewrap cannot start.
ENABLE_EXEC_SESSIONS = env.bool("ENABLE_EXEC_SESSIONS", default=False)
EXEC_SESSIONS_ALLOW_UNSAFE = env.bool("EXEC_SESSIONS_ALLOW_UNSAFE", default=False)
EXEC_DEFAULT_TIMEOUT_SECONDS = env.float("EXEC_DEFAULT_TIMEOUT_SECONDS", default=30.0)
EXEC_MAX_TIMEOUT_SECONDS = env.float("EXEC_MAX_TIMEOUT_SECONDS", default=300.0)
EXEC_SESSION_TTL_SECONDS = env.int("EXEC_SESSION_TTL_SECONDS", default=3600)
EXEC_SESSION_IDLE_SECONDS = env.int("EXEC_SESSION_IDLE_SECONDS", default=900)
EXEC_OUTPUT_LIMIT_BYTES = env.int("EXEC_OUTPUT_LIMIT_BYTES", default=65536)
EXEC_MEMORY_MB = env.int("EXEC_MEMORY_MB", default=512)
EXEC_CPU_SECONDS = env.int("EXEC_CPU_SECONDS", default=300)
EXEC_MAX_PROCESSES = env.int("EXEC_MAX_PROCESSES", default=64)
EXEC_MAX_FILE_MB = env.int("EXEC_MAX_FILE_MB", default=100)
# Session workdirs and control sockets; every directory above it must be world-searchable (o+x).
EXEC_ROOT = Path(env.str("EXEC_ROOT", default=str(DATA_DIR / "exec")))
# The audit trail on disk: ACTIVITY_DIR/YYYY-MM-DD/session_<id>/meta.json, 01-exec.json, ...
ACTIVITY_DIR = Path(env.str("ACTIVITY_DIR", default=str(DATA_DIR / "activity")))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
