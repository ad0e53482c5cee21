"""Settings: the only module that reads the environment.

Everything defaults for one machine (SQLite under ./var); operators override with
SUPPORTDESK_* variables, DATABASE_URL, or a `.env` file in the data directory.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent


def _read_dotenv(path: Path) -> dict[str, str]:
    """Parse KEY=VALUE lines; the real environment always wins over the file."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'\"")
    return values


HOME = Path(os.environ.get("SUPPORTDESK_HOME", "./var")).resolve()
_DOTENV = _read_dotenv(HOME / ".env")


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, _DOTENV.get(name, default))


def env_bool(name: str, *, default: bool) -> bool:
    """Only `true` or `false`: a mistyped boolean stops start-up instead of meaning False."""
    value = env(name, "").strip().lower()
    if not value:
        return default
    if value not in {"true", "false"}:
        raise ImproperlyConfigured(f"{name} must be 'true' or 'false', not {value!r}.")
    return value == "true"


def env_int(name: str, *, default: int) -> int:
    value = env(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from None


def env_secret(name: str) -> str:
    """NAME, or the contents of the file named by NAME_FILE (for container secrets)."""
    if value := env(name):
        return value
    if path := env(f"{name}_FILE"):
        return Path(path).read_text(encoding="utf-8").strip()
    return ""


DEBUG = env_bool("SUPPORTDESK_DEBUG", default=False)
TESTING = env_bool("SUPPORTDESK_TESTING", default=False)

DATABASE_URL = env("DATABASE_URL", f"sqlite:///{HOME / 'supportdesk.sqlite3'}")
_db = dj_database_url.parse(DATABASE_URL, conn_max_age=0)
USING_SQLITE = _db["ENGINE"] == "django.db.backends.sqlite3"
if USING_SQLITE:
    # Several writers (web, worker, gateway) share one file: IMMEDIATE transactions take the
    # write lock up front, so a reader never has to upgrade and fail with "database is locked".
    # Transactions queue for the write lock on a lock file: supportdesk/sqlite_backend.
    _db["ENGINE"] = "supportdesk.sqlite_backend"
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
# Each server thread keeps its connection: opening one (and, on SQLite, running the PRAGMAs
# above) cost more than a whole ticket create's SQL (bench/README.md).
_db["CONN_MAX_AGE"] = 600
_db["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _db}


def _secret_key() -> str:
    """With SQLite one machine owns the data directory, so a key can be made there on first
    start; any other database means several machines, which must share one key."""
    if key := env_secret("SUPPORTDESK_SECRET_KEY"):
        return key
    if not USING_SQLITE:
        return ""  # supportdesk web/worker refuse to start; see cli.require_secret_key
    path = HOME / "secret_key"
    if not path.exists():
        HOME.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return path.read_text(encoding="utf-8").strip()


SECRET_KEY = _secret_key()

BASE_URL = env("SUPPORTDESK_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
_base = urlsplit(BASE_URL)
ALLOWED_HOSTS = [h for h in {_base.hostname or "127.0.0.1", "127.0.0.1", "localhost", "[::1]"} if h]
ALLOWED_HOSTS += [h for h in env("SUPPORTDESK_ALLOWED_HOSTS", "").split(",") if h]
if TESTING:
    ALLOWED_HOSTS.append("testserver")
CSRF_TRUSTED_ORIGINS = [f"{_base.scheme}://{_base.netloc}"]
SECURE_COOKIES = _base.scheme == "https"
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = 60 * 60 * 24 * 14
if SECURE_COOKIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

MAIL_DOMAIN = env("SUPPORTDESK_MAIL_DOMAIN", "support.localhost")
UPLOAD_MAX_BYTES = env_int("SUPPORTDESK_UPLOAD_MAX_BYTES", default=25 * 1024 * 1024)
# Inbound mail gateway (`supportdesk smtpd`, also run by `serve`): where it listens, and the
# largest message it accepts (552 above it); raw messages are kept under mail/raw/ in storage.
SMTPD_HOST = env("SUPPORTDESK_SMTPD_HOST", "127.0.0.1")
SMTPD_PORT = env_int("SUPPORTDESK_SMTPD_PORT", default=2525)
MAIL_MAX_BYTES = env_int("SUPPORTDESK_MAIL_MAX_BYTES", default=35 * 1024 * 1024)
# The gateway's own small database, where an accepted mail's row commits before its 250 and
# waits to be moved into the main one (intake/spool.py).
MAIL_SPOOL_PATH = HOME / "mail-spool.sqlite3"
# API requests a minute per token; 0 turns the limit off.
API_RATE_LIMIT = env_int("SUPPORTDESK_API_RATE_LIMIT", default=600)
# Leave room for the rest of a multipart form above the largest allowed file.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FIELDS = 2000

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_tasks_db",
    "supportdesk.events",
    "supportdesk.accounts",
    "supportdesk.tickets",
    "supportdesk.notify",
    "supportdesk.intake",
    "supportdesk.web",
    "ninja",
    "supportdesk.api",
]

# bench/api.py measures the API beside a trivial view that inserts one row (the framework's
# ceiling): that view, its table and its URL exist only when this is on.
BENCH_CEILING = env_bool("SUPPORTDESK_BENCH_CEILING", default=False)
if BENCH_CEILING:
    INSTALLED_APPS.append("supportdesk.benchceiling")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "supportdesk.web.middleware.UserTimezoneMiddleware",
    "supportdesk.api.middleware.MethodNotAllowedProblem",
]

SECURE_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

ROOT_URLCONF = "supportdesk.urls"
WSGI_APPLICATION = "supportdesk.wsgi.application"

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

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["supportdesk.accounts.backends.EmailBackend"]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
if TESTING:
    # Tests create hundreds of users; argon2's deliberate cost would dominate the run.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *PASSWORD_HASHERS]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Login throttling, counted in the database so that every web process sees the same count.
LOGIN_FAILURES_PER_EMAIL = 5
LOGIN_FAILURES_PER_ADDRESS = 20
LOGIN_THROTTLE_SECONDS = 15 * 60

# Password reset: a link is valid this long from when its mail is sent (the token is made by
# the mail's handler); at most so many reset mails go out per account, and per requesting
# address, within one throttle window. Over a limit the page answers the same, sends nothing.
PASSWORD_RESET_TIMEOUT = 60 * 60
PASSWORD_RESETS_PER_USER = 3
PASSWORD_RESETS_PER_ADDRESS = 20
PASSWORD_RESET_THROTTLE_SECONDS = 60 * 60

TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = HOME / "static"
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(HOME / "files")},
    },
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if TESTING or DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage",
    },
}
WHITENOISE_USE_FINDERS = TESTING or DEBUG

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DEFAULT_FROM_EMAIL = env("SUPPORTDESK_FROM_EMAIL", f"support@{MAIL_DOMAIN}")
# Outbound mail: smtp://, smtp+tls:// or smtps:// with user:password@host:port; empty
# writes each mail as a file under the data directory (notify/transport.py).
EMAIL_URL = env_secret("SUPPORTDESK_EMAIL_URL")
MAIL_OUT_DIR = HOME / "mail-out"
# Background runs (events/tasks.py): how long one may hold its lease before another worker
# takes it over, and how often a worker looks for expired leases, due retries and runs
# whose wake-up was lost.
TASK_LEASE_SECONDS = env_int("SUPPORTDESK_TASK_LEASE_SECONDS", default=300)
TASK_SWEEP_SECONDS = env_int("SUPPORTDESK_TASK_SWEEP_SECONDS", default=5)
TASK_MAX_ATTEMPTS = env_int("SUPPORTDESK_TASK_MAX_ATTEMPTS", default=10)
# Resolved tickets close by themselves after this many days (0 = never).
AUTO_CLOSE_RESOLVED_DAYS = env_int("SUPPORTDESK_AUTO_CLOSE_DAYS", default=7)
# Mail in (intake/): a reply to a ticket closed less than this many days ago re-opens it, an
# older one opens a follow-up ticket; a sender who opened more than this many tickets by mail
# in the last hour is held for an agent (0 = no limit).
MAIL_REOPEN_DAYS = env_int("SUPPORTDESK_MAIL_REOPEN_DAYS", default=30)
MAIL_NEW_TICKETS_PER_HOUR = env_int("SUPPORTDESK_MAIL_NEW_TICKETS_PER_HOUR", default=20)
# IMAP polling (`supportdesk fetchmail` without --once): seconds between two polls of
# every mailbox that has an IMAP account.
FETCHMAIL_SECONDS = env_int("SUPPORTDESK_FETCHMAIL_SECONDS", default=60)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("SUPPORTDESK_LOG_LEVEL", "WARNING")},
}
