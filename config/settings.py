"""One settings module, driven by environment variables (see .env.example).

The defaults are the embedded demo: SQLite, a broker that needs no server, local media.
Production sets DJANGO_DEBUG=false and must then provide DJANGO_SECRET_KEY.
"""
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=True)
_INSECURE_KEY = "insecure-demo-key-never-use-in-production"
SECRET_KEY = env("DJANGO_SECRET_KEY", default=_INSECURE_KEY if DEBUG else None)
if not SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is false.")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

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
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "csp",
    "core",
    "annotation",
    "curation",
    "mlworkers",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "core.api_support.ApiErrorMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the Celery worker share one file: wait for locks instead of failing,
    # and let tests put their database in a file a worker process can open too.
    DATABASES["default"].setdefault("OPTIONS", {}).update(timeout=30, transaction_mode="IMMEDIATE")
    DATABASES["default"]["TEST"] = {"NAME": env("DJANGO_TEST_SQLITE_NAME", default=str(VAR_DIR / "test.sqlite3"))}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    # An unreachable host fails a request (and /healthz/) within seconds instead of the TCP default
    # of minutes; a URL's own ?connect_timeout= wins.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGIN_URL = "/accounts/login/"
# Under /api/ a failed CSRF check is answered in the API's error shape.
CSRF_FAILURE_VIEW = "core.api_support.csrf_failure"
# Sessions are read on every workspace request: keep them in the cache, backed by the database.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# --- static and media -------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = env("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "static"))
Path(STATIC_ROOT).mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request otherwise
MEDIA_URL = env("DJANGO_MEDIA_URL", default="/media/")
MEDIA_ROOT = env("DJANGO_MEDIA_ROOT", default=str(VAR_DIR / "media"))
# Local media is answered by annotation.media, to members of a project holding the image only. With
# a prefix, it answers with X-Accel-Redirect to <prefix><key> and the web server (an `internal`
# location on MEDIA_ROOT) sends the bytes; without one, Django streams them itself.
MEDIA_INTERNAL_REDIRECT_PREFIX = env("DJANGO_MEDIA_INTERNAL_REDIRECT_PREFIX", default="")
if MEDIA_INTERNAL_REDIRECT_PREFIX and not (MEDIA_INTERNAL_REDIRECT_PREFIX.startswith("/")
                                           and MEDIA_INTERNAL_REDIRECT_PREFIX.endswith("/")):
    raise ImproperlyConfigured("DJANGO_MEDIA_INTERNAL_REDIRECT_PREFIX must start and end with '/', "
                               f"not {MEDIA_INTERNAL_REDIRECT_PREFIX!r}.")

STORAGE_BACKEND = env("STORAGE_BACKEND", default="local")  # local | s3
AWS_ACCESS_KEY_ID = env("AWS_ACCESS_KEY_ID", default=None)
AWS_SECRET_ACCESS_KEY = env("AWS_SECRET_ACCESS_KEY", default=None)
AWS_S3_REGION_NAME = env("AWS_S3_REGION_NAME", default="us-east-1")
AWS_S3_ENDPOINT_URL = env("AWS_S3_ENDPOINT_URL", default=None)
# Where browsers reach S3 when the app reaches it at a private address (compose: http://minio:9000):
# signed URLs handed to browsers name this endpoint (core.storage.S3PublicUrlStorage).
AWS_S3_PUBLIC_ENDPOINT_URL = env("AWS_S3_PUBLIC_ENDPOINT_URL", default=None)
AWS_STORAGE_BUCKET_NAME = env("AWS_STORAGE_BUCKET_NAME", default=None)
AWS_QUERYSTRING_EXPIRE = env.int("AWS_QUERYSTRING_EXPIRE", default=3600)
AWS_DEFAULT_ACL = None
AWS_S3_FILE_OVERWRITE = True

if STORAGE_BACKEND == "s3":
    if not AWS_STORAGE_BUCKET_NAME:
        raise ImproperlyConfigured("STORAGE_BACKEND=s3 needs AWS_STORAGE_BUCKET_NAME.")
    _default_storage = {"BACKEND": "core.storage.S3PublicUrlStorage"}
elif STORAGE_BACKEND == "local":
    # Keys are content addresses: writing one twice must not invent a renamed copy.
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"allow_overwrite": True}}
else:
    raise ImproperlyConfigured(f"STORAGE_BACKEND must be 'local' or 's3', not {STORAGE_BACKEND!r}.")
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- import -----------------------------------------------------------------------------
IMPORT_MAX_PIXELS = env.int("IMPORT_MAX_PIXELS", default=64_000_000)
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=50 * 1024 * 1024)
IMPORT_ALLOWED_FORMATS = env.list("IMPORT_ALLOWED_FORMATS", default=["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
IMPORT_PREVIEW_LONG_SIDE = env.int("IMPORT_PREVIEW_LONG_SIDE", default=448)
IMPORT_PROMPT_MAX_CHARS = env.int("IMPORT_PROMPT_MAX_CHARS", default=4000)
# Manifest lines per transaction: an import whose worker died goes on after its last committed chunk.
IMPORT_CHUNK_LINES = env.int("IMPORT_CHUNK_LINES", default=10000)
# Seconds one socket operation (connect, or one read) may wait on an image URL...
IMPORT_URL_TIMEOUT_S = env.float("IMPORT_URL_TIMEOUT_S", default=20.0)
# ...and the whole fetch of one image (connect, headers, body, redirects): a server that drips
# bytes never waits IMPORT_URL_TIMEOUT_S on one read, so only this bounds it.
IMPORT_URL_DEADLINE_S = env.float("IMPORT_URL_DEADLINE_S", default=IMPORT_URL_TIMEOUT_S)
# Largest manifest an API import accepts, in bytes (413 past it). The upload streams to a
# temporary file (in FILE_UPLOAD_TEMP_DIR), never into the web process's memory.
IMPORT_MANIFEST_MAX_BYTES = env.int("IMPORT_MANIFEST_MAX_BYTES", default=1024**3)
FILE_UPLOAD_TEMP_DIR = env("DJANGO_FILE_UPLOAD_TEMP_DIR", default=None)
# Other uploads over this many bytes go to a temporary file too (Django's default, made explicit);
# request bodies other than files are refused past DATA_UPLOAD_MAX_MEMORY_SIZE (Django's 2.5 MiB).
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# Refuse URLs that resolve to loopback, private, link-local or reserved addresses (SSRF guard).
IMPORT_ALLOW_PRIVATE_URLS = env.bool("IMPORT_ALLOW_PRIVATE_URLS", default=False)
# Local folders an API import may read images from; the CLI may read any folder it is given.
IMPORT_LOCAL_ROOTS = env.list("IMPORT_LOCAL_ROOTS", default=[])

# --- celery -----------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://localhost/")
CELERY_BROKER_FOLDER = Path(env("CELERY_BROKER_FOLDER", default=str(VAR_DIR / "broker")))
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _sub in ("queue", "processed", "control"):
        (CELERY_BROKER_FOLDER / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_FOLDER / "queue"),
        "data_folder_out": str(CELERY_BROKER_FOLDER / "queue"),
        "processed_folder": str(CELERY_BROKER_FOLDER / "processed"),
        "control_folder": str(CELERY_BROKER_FOLDER / "control"),
        "store_processed": False,
    }
# --- background jobs (imports, auto-annotation, filter runs, exports; see core/jobs.py) ------
# A running job's worker writes a heartbeat this often; a job silent for JOB_STALE_AFTER_SECONDS
# lost its worker. The reaper (Celery beat, every JOB_REAP_SECONDS) then queues it again, or
# fails it with "worker lost" once JOB_MAX_ATTEMPTS workers were lost on it: a dead worker's job
# moves on within JOB_STALE_AFTER_SECONDS + JOB_REAP_SECONDS.
JOB_HEARTBEAT_SECONDS = env.float("JOB_HEARTBEAT_SECONDS", default=10.0)
JOB_STALE_AFTER_SECONDS = env.float("JOB_STALE_AFTER_SECONDS", default=60.0)
JOB_REAP_SECONDS = env.float("JOB_REAP_SECONDS", default=30.0)
JOB_MAX_ATTEMPTS = env.int("JOB_MAX_ATTEMPTS", default=3)
if JOB_STALE_AFTER_SECONDS < 3 * JOB_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured("JOB_STALE_AFTER_SECONDS must be at least 3 x JOB_HEARTBEAT_SECONDS, or a live "
                               "worker's job is taken for lost after one late beat.")
# Redis hands an unacknowledged task (its worker died) to another worker after this many seconds.
# The reaper finds such jobs sooner; this is the backstop for a task lost before it claimed its
# job. A task that runs longer is delivered a second time, finds its job alive and does nothing.
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=900)
if not CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_BEAT_SCHEDULE = {
    "jobs-reap": {"task": "core.jobs_reap", "schedule": JOB_REAP_SECONDS},
    "auto-job-chunks-reap": {"task": "mlworkers.auto_job_chunks_reap", "schedule": JOB_REAP_SECONDS},
}
# Adaptive collection (docs/adaptive.md): every adaptive project is refreshed on this beat, and
# about every ADAPTIVE_REFRESH_EVERY_JUDGMENTS pairwise judgments (asked for by the submit path).
ADAPTIVE_REFRESH_SECONDS = env.int("ADAPTIVE_REFRESH_SECONDS", default=300)
ADAPTIVE_REFRESH_EVERY_JUDGMENTS = env.int("ADAPTIVE_REFRESH_EVERY_JUDGMENTS", default=500)
CELERY_BEAT_SCHEDULE["adaptive-refresh"] = {"task": "annotation.adaptive_refresh_all",
                                            "schedule": ADAPTIVE_REFRESH_SECONDS}
CELERY_BEAT_SCHEDULE_FILENAME = env("CELERY_BEAT_SCHEDULE_FILENAME", default=str(VAR_DIR / "celerybeat-schedule"))

CELERY_TASK_DEFAULT_QUEUE = "default"
# Model work goes to GPU workers (`-Q gpu`); planning and imports to the default queue.
CELERY_TASK_ROUTES = {"mlworkers.auto_job_chunk": {"queue": "gpu"}, "mlworkers.auto_job_start": {"queue": "default"},
                      "curation.filter_run_execute": {"queue": "default"},
                      "curation.dataset_export_build": {"queue": "default"},
                      "curation.dataset_export_cleanup": {"queue": "default"},
                      "annotation.import_job_finish": {"queue": "default"},
                      "mlworkers.auto_job_chunks_reap": {"queue": "default"}, "core.jobs_reap": {"queue": "default"},
                      "annotation.adaptive_refresh": {"queue": "default"},
                      "annotation.adaptive_refresh_all": {"queue": "default"}}
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = False

# --- API --------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first so an anonymous call is answered 401 with a WWW-Authenticate header.
        "annotation.auth.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "core.api_support.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api_support.exception_handler",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "PrefStudio API",
    "DESCRIPTION": "Preference data for text-to-image reward models: projects, items, imports, judgments.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "TaskTypeEnum": "annotation.models.TaskType",
        "ExperienceEnum": "annotation.models.AnnotatorProfile.Experience",
        "JobStatusEnum": "core.models.JobStatus",
    },
    # Swagger UI and Redoc from this site's static files (drf-spectacular-sidecar), not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "core.api_support.document_unsupported_media_type"],
}

# --- signing in -------------------------------------------------------------------------------
# API tokens stop working this many hours after they were issued (0: never). Tokens are bearer
# secrets held by scripts; a month outlasts a labelling campaign's scripts between re-logins
# while a leaked token does not work forever. POST /api/v1/auth/token/ issues a new one.
API_TOKEN_TTL_HOURS = env.int("API_TOKEN_TTL_HOURS", default=30 * 24)
# Failed sign-ins (login page, admin, token endpoint) are counted by django-axes per account and
# address together: after LOGIN_FAILURE_LIMIT failures that account is refused from that address
# (429) for LOGIN_COOLOFF_MINUTES. Counting the pair, rather than the account or the address
# alone, means nobody can lock a person out from elsewhere, and a team behind one NAT address does
# not lock itself out. Unlock early with `manage.py axes_reset_username <name>`.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
LOGIN_COOLOFF_MINUTES = env.float("LOGIN_COOLOFF_MINUTES", default=15.0)
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Failures during a lock-out do not extend it, so the Retry-After given is when it ends.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "annotation.auth.sign_in_lockout_response"
AXES_CLIENT_IP_CALLABLE = "annotation.auth.sign_in_client_address"  # the client's, behind the proxy
AXES_DISABLE_ACCESS_LOG = True  # only failures are kept, not a row per successful sign-in
AXES_VERBOSE = False  # no banner on every manage.py command

# --- e-mail (invitation links) -----------------------------------------------------------------
# Invitations are e-mailed only where an SMTP server is named; without one the members page shows
# the link to copy. Tests use Django's in-memory backend.
EMAIL_HOST = env("EMAIL_HOST", default="")
EMAIL_PORT = env.int("EMAIL_PORT", default=587)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=True)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="PrefStudio <noreply@localhost>")

# --- content security policy (django-csp) ----------------------------------------------------
def _origin(url: str | None) -> str | None:
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def _image_origins() -> list[str]:
    """Origins images are shown from besides this site: an absolute MEDIA_URL, and S3's signed URLs."""
    origins = [_origin(MEDIA_URL)]
    if STORAGE_BACKEND == "s3":
        endpoint = AWS_S3_PUBLIC_ENDPOINT_URL or AWS_S3_ENDPOINT_URL
        if endpoint:
            origins.append(_origin(endpoint))
        else:  # AWS signs virtual-hosted URLs, with or without the region in the host
            origins += [f"https://{AWS_STORAGE_BUCKET_NAME}.s3.amazonaws.com",
                        f"https://{AWS_STORAGE_BUCKET_NAME}.s3.{AWS_S3_REGION_NAME}.amazonaws.com"]
    return list(dict.fromkeys(o for o in origins if o))


# No inline script or style anywhere: pages load their code from static files and read their data
# from json_script or data- attributes. The nonce is for the workspace's import map alone (an inline
# <script type="importmap"> is not executed but CSP counts it as script); a page that does not ask
# for a nonce gets none in its header.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF],
        "img-src": [SELF, "data:", *_image_origins()],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    },
}

# --- proxy headers ------------------------------------------------------------------------
# Only behind a proxy that sets these headers itself (docker-compose.yml's, whose app port is not
# published): anyone who reaches gunicorn directly could otherwise claim HTTPS or another host.
TRUST_PROXY_HEADERS = env.bool("DJANGO_TRUST_PROXY_HEADERS", default=False)
if TRUST_PROXY_HEADERS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True

# --- production hardening (checked by `manage.py check --deploy`) -------------------------
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", default="INFO")},
}

# --- annotator workspace ----------------------------------------------------------------
WORK_LEASE_MINUTES = env.int("WORK_LEASE_MINUTES", default=30)
WORK_UNDO_MINUTES = env.int("WORK_UNDO_MINUTES", default=30)
# Expired leases are swept before a lease at most this often (per project and process).
WORK_EXPIRY_SWEEP_SECONDS = env.float("WORK_EXPIRY_SWEEP_SECONDS", default=5.0)

# --- machine annotators ---------------------------------------------------------------------
# Where model weights named by s3:// keys are downloaded to (once per worker machine).
MODEL_CACHE_DIR = env("MODEL_CACHE_DIR", default=str(VAR_DIR / "models"))
# Whole prompts are packed into one GPU task up to about this many images or pairs; a cancel
# takes effect between tasks.
AUTO_JOB_CHUNK_ITEMS = env.int("AUTO_JOB_CHUNK_ITEMS", default=64)
# A running chunk writes its job's counters at most this often (one UPDATE), as the judge answers.
AUTO_JOB_PROGRESS_SECONDS = env.float("AUTO_JOB_PROGRESS_SECONDS", default=1.0)
# Key sent as a Bearer token to OpenAI-compatible judge endpoints (vLLM, hosted APIs); never logged.
JUDGE_API_KEY = env("JUDGE_API_KEY", default="")

# --- dataset exports --------------------------------------------------------------------------
# Local destinations asked for through the browser or the API must lie under this folder (the
# export_dataset command may write anywhere its operator can).
EXPORT_ROOT = env("EXPORT_ROOT", default=str(VAR_DIR / "exports"))
# Where shards bound for s3:// destinations are written before their upload (one shard at a time).
EXPORT_STAGING_DIR = env("EXPORT_STAGING_DIR", default=str(VAR_DIR / "export-staging"))
