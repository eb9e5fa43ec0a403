"""Settings, read from the environment. See docs/configuration.md for every variable.

With nothing set the panel runs on a bare machine: SQLite under var/, the in-memory channel
layer and django-q2's ORM broker. DATABASE_URL and REDIS_URL switch to PostgreSQL and Redis.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from panel.env import env_bool, env_int, env_list, env_str, secret_from_file_or_create

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PANEL_VAR_DIR", str(BASE_DIR / "var")))
# Parallel test workers (pytest-xdist) each get their own files: audit witness, test database.
if _test_worker := os.environ.get("PYTEST_XDIST_WORKER"):
    VAR_DIR = VAR_DIR / _test_worker

DEBUG = env_bool("PANEL_DEBUG", False)
# HTTPS-only cookies, redirect and HSTS. On by default outside debug mode.
SECURE = env_bool("PANEL_SECURE", not DEBUG)

# Outside debug mode both secrets are required, but only where they are used: tooling such as
# makemigrations runs without them, while the web entry point (panel/asgi.py) and
# `check --deploy` (panel/checks.py) refuse to go on, and Django refuses an empty SECRET_KEY
# the moment anything reads it.
SECRET_KEY = env_str("SECRET_KEY") or ""
if not SECRET_KEY and DEBUG:
    SECRET_KEY = secret_from_file_or_create(
        VAR_DIR / "secret_key", lambda: secrets.token_urlsafe(50)
    )

# Keys of the audit chain's HMAC (docs/security.md): the first signs new entries, all verify.
# Kept outside the database, so rewriting the log there cannot forge valid entries.
AUDIT_KEYS = env_list("PANEL_AUDIT_KEYS")
if not AUDIT_KEYS and DEBUG:
    AUDIT_KEYS = [secret_from_file_or_create(VAR_DIR / "audit_key", lambda: secrets.token_hex(32))]
# Where the audit head is written out periodically (besides the log), to catch truncation.
AUDIT_WITNESS_FILE = env_str("PANEL_AUDIT_WITNESS_FILE") or str(VAR_DIR / "audit-head.log")

# First key encrypts, every key decrypts: prepend a new key, run rotate_encryption_keys,
# then drop the old one.
ENCRYPTION_KEYS = env_list("PANEL_ENCRYPTION_KEYS")
if not ENCRYPTION_KEYS and DEBUG:
    ENCRYPTION_KEYS = [
        secret_from_file_or_create(
            VAR_DIR / "encryption_key", lambda: Fernet.generate_key().decode()
        )
    ]
for _key in ENCRYPTION_KEYS:
    try:
        Fernet(_key)
    except ValueError as exc:
        raise ImproperlyConfigured(
            "PANEL_ENCRYPTION_KEYS holds a value that is not a Fernet key"
        ) from exc

# Read by panel/checks.py (Django raises on any read of an empty SECRET_KEY).
PANEL_MISSING_SECRETS = [
    name
    for name, value in (
        ("SECRET_KEY", SECRET_KEY),
        ("PANEL_ENCRYPTION_KEYS", ENCRYPTION_KEYS),
        ("PANEL_AUDIT_KEYS", AUDIT_KEYS),
    )
    if not value
]

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# Set when the panel sits behind a reverse proxy that sets X-Forwarded-For/-Proto. Only
# connections from PANEL_TRUSTED_PROXIES (default: this host) may say who the client is.
BEHIND_PROXY = env_bool("PANEL_BEHIND_PROXY", False)
TRUSTED_PROXIES = env_list(
    "PANEL_TRUSTED_PROXIES", ["127.0.0.0/8", "::1/128"] if BEHIND_PROXY else []
)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "daphne",
    "panel.apps.PanelAdminConfig",  # django.contrib.admin with the panel's own site
    # Before django.contrib.auth: its audited changepassword command replaces Django's.
    "accounts",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.sites",
    "django.contrib.humanize",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_otp",  # devices: accounts.devices (secrets encrypted or hashed at rest)
    "allauth",
    "allauth.account",
    "guardian",
    "csp",
    # Before django_q: core's qcluster command (a worker that claims its tasks) replaces it.
    "core",
    "django_q",
    "servers",
    "websites",
    "websites.certificates",
    "websites.databases",
    "dns",
    "vps",
    "monitoring",
    "mail",
    "backups",
    "hooks",
    "billing",
]

MIDDLEWARE = [
    "mail.hosts.AutoconfigHostMiddleware",  # before anything reads the Host
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Pages are gzipped too; Django pads each body with random bytes against BREACH.
    "django.middleware.gzip.GZipMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.middleware.PanelLoginRequiredMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "accounts.middleware.SecurityPolicyMiddleware",
    "core.middleware.RefuseNulMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "panel.urls"
ASGI_APPLICATION = "panel.asgi.application"
WSGI_APPLICATION = None
AUTH_USER_MODEL = "accounts.User"
SITE_ID = 1

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
                "core.context_processors.portal",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'panel.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers and one writer share the file; the busy timeout makes a writer wait
    # for another; IMMEDIATE transactions take the write lock at BEGIN, so two transactions
    # that read then write cannot deadlock into "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;"
            "PRAGMA busy_timeout=20000;",
        }
    )
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
else:
    # Explicit, so a forked test server (Channels' live server) does not prefix it twice.
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}"}
    # A connection pool per process (psycopg_pool). Under ASGI every concurrent request runs
    # in a thread of its own with a connection of its own: without a bound, a burst of
    # requests opens as many connections as PostgreSQL allows and the rest fail. With the
    # pool a request waits (PANEL_DB_POOL_TIMEOUT seconds) for one of this process's
    # connections. Needs DATABASE_CONN_MAX_AGE=0 (the pool keeps them open).
    if _pool_size := env_int("PANEL_DB_POOL_SIZE", 0):
        if DATABASES["default"]["CONN_MAX_AGE"]:
            # Django refuses the pair only at the first query; say so at start-up.
            raise ImproperlyConfigured(
                "PANEL_DB_POOL_SIZE needs DATABASE_CONN_MAX_AGE=0 (the pool keeps connections)."
            )
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": _pool_size,
            "timeout": env_int("PANEL_DB_POOL_TIMEOUT", 20),
        }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
# Parallel test workers share one Redis: each gets its own key prefix and task queue.
_worker_suffix = f"-{_test_worker}" if _test_worker else ""
REDIS_PREFIX = env_str("PANEL_REDIS_PREFIX", "uhp") + _worker_suffix
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py's 5 s default read timeout equals channels_redis's 5 s blocking
                # pop, so an idle socket's consumer died with "Timeout reading": read longer.
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30}],
                "prefix": REDIS_PREFIX,
                "capacity": 1000,
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": REDIS_PREFIX,
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

Q_CLUSTER = {
    "name": env_str("PANEL_Q_NAME", "panel") + _worker_suffix,
    "workers": env_int("PANEL_WORKERS", 2),
    "timeout": env_int("PANEL_TASK_TIMEOUT", 1800),
    "retry": env_int("PANEL_TASK_TIMEOUT", 1800) + 60,
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,
    "label": "Tasks",
}
# Brokers that claim what they pull, so a worker killed with tasks in hand loses none
# (core/workers.py).
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
    Q_CLUSTER["broker_class"] = "core.brokers.ClaimingRedis"
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["broker_class"] = "core.brokers.ClaimingORM"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
    "guardian.backends.ObjectPermissionBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous grants

# allauth: email + password, verified email required before login.
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = env_str("PANEL_EMAIL_VERIFICATION", "mandatory")
ACCOUNT_ADAPTER = "accounts.adapter.PanelAccountAdapter"
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
# One address per account; a new one replaces it only once verified.
ACCOUNT_CHANGE_EMAIL = True
ACCOUNT_FORMS = {"add_email": "accounts.forms.AddEmailForm"}
ACCOUNT_SESSION_REMEMBER = False
# Our own throttle (accounts.throttle) counts failures per account and per IP.
ACCOUNT_RATE_LIMITS = {"login_failed": False}
PANEL_ALLOW_SIGNUP = env_bool("PANEL_ALLOW_SIGNUP", False)
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"

# A running operation's worker stamps it this often; one not stamped for the stale limit is
# failed and its lock (one server ...) freed for the next operation.
PANEL_HEARTBEAT_SECONDS = env_int("PANEL_HEARTBEAT_SECONDS", 10)
PANEL_OPERATION_STALE_SECONDS = env_int("PANEL_OPERATION_STALE_SECONDS", 60)

# Largest API page (?limit=); bigger asks answer 400.
PANEL_API_MAX_LIMIT = env_int("PANEL_API_MAX_LIMIT", 500)

# TLS certificates (docs/certificates.md). Let's Encrypt's staging directory:
# https://acme-staging-v02.api.letsencrypt.org/directory
PANEL_ACME_DIRECTORY = env_str(
    "PANEL_ACME_DIRECTORY", "https://acme-v02.api.letsencrypt.org/directory"
)
PANEL_ACME_EMAIL = env_str("PANEL_ACME_EMAIL", "")
# A CA bundle for the ACME directory's own HTTPS (Pebble's test certificate); empty: system CAs.
PANEL_ACME_CA_BUNDLE = env_str("PANEL_ACME_CA_BUNDLE", "") or True
PANEL_ACME_RENEW_DAYS = env_int("PANEL_ACME_RENEW_DAYS", 30)
PANEL_ACME_RENEW_EVERY_MINUTES = env_int("PANEL_ACME_RENEW_EVERY_MINUTES", 24 * 60)
PANEL_ACME_TIMEOUT = env_int("PANEL_ACME_TIMEOUT", 90)
# DNS-01: seconds to wait for every nameserver of the zone to serve the challenge TXT records.
PANEL_ACME_DNS_WAIT = env_int("PANEL_ACME_DNS_WAIT", 120)
# Nameservers (ip or ip:port) for the check that a site's names point at its server; empty:
# the system's resolvers.
PANEL_ACME_RESOLVERS = env_list("PANEL_ACME_RESOLVERS")
# The panel's public host name (no scheme): mail domains' autoconfig./autodiscover. CNAMEs
# point here and those Host names are let through to the autoconfig endpoints only
# (mail/hosts.py). Blank: those records are not published.
PANEL_PUBLIC_HOST = env_str("PANEL_PUBLIC_HOST", "")
# Nameservers (ip or ip:port) the mail DNS check asks (mail/dnscheck.py); empty: the system's.
PANEL_MAIL_RESOLVERS = env_list("PANEL_MAIL_RESOLVERS")
# How often every mail server's mailbox usage is read (doveadm quota get -A).
PANEL_MAIL_USAGE_EVERY_MINUTES = env_int("PANEL_MAIL_USAGE_EVERY_MINUTES", 60)
# How often every mail domain's DNS records are checked (the mail_dns alert reads them).
PANEL_MAIL_DNS_CHECK_EVERY_MINUTES = env_int("PANEL_MAIL_DNS_CHECK_EVERY_MINUTES", 360)
# Order a certificate by itself when a site without one is applied and its names point here.
PANEL_ACME_AUTO = env_bool("PANEL_ACME_AUTO", True)
# Networks of the panel's own host beyond those its interfaces show (servers/addresses.py),
# and the networks non-administrators may add servers in (blank: public addresses only).
PANEL_OWN_NETWORKS = env_list("PANEL_OWN_NETWORKS")
PANEL_SERVER_NETWORKS = env_list("PANEL_SERVER_NETWORKS")

# Monitoring (docs/monitoring.md): seconds between collection rounds, parallel collections,
# seconds one server may take, failed rounds in a row before a server is offline.
PANEL_MONITORING_INTERVAL = env_int("PANEL_MONITORING_INTERVAL", 30)
PANEL_MONITORING_WORKERS = env_int("PANEL_MONITORING_WORKERS", 32)
PANEL_MONITORING_TIMEOUT = env_int("PANEL_MONITORING_TIMEOUT", 10)
# Days an expired (suspended) VPS is kept before it is deleted (vps/expiry.py).
PANEL_VPS_EXPIRY_GRACE_DAYS = env_int("PANEL_VPS_EXPIRY_GRACE_DAYS", 7)
PANEL_MONITORING_OFFLINE_AFTER = env_int("PANEL_MONITORING_OFFLINE_AFTER", 3)
# Alert notifications: attempts per delivery (retried with backoff), seconds per attempt,
# and the Telegram Bot API's base URL (a stand-in in tests, or a local Bot API server).
PANEL_ALERT_DELIVERY_ATTEMPTS = env_int("PANEL_ALERT_DELIVERY_ATTEMPTS", 5)
PANEL_NOTIFY_TIMEOUT = env_int("PANEL_NOTIFY_TIMEOUT", 10)
PANEL_WEBHOOK_ATTEMPTS = env_int("PANEL_WEBHOOK_ATTEMPTS", 8)
PANEL_WEBHOOK_KEEP_DAYS = env_int("PANEL_WEBHOOK_KEEP_DAYS", 30)
PANEL_TELEGRAM_API_URL = env_str("PANEL_TELEGRAM_API_URL", "https://api.telegram.org")
# Stripe's API address (billing/stripe_client.py): Stripe's own unless a stand-in or proxy
# is put in front (the tests point it at tests/integration/stripe_standin.py).
PANEL_STRIPE_API_BASE = env_str("PANEL_STRIPE_API_BASE", "https://api.stripe.com")
# Uptime checks run at once, and a CA bundle for HTTPS checks (blank: the system's CAs).
PANEL_CHECK_WORKERS = env_int("PANEL_CHECK_WORKERS", 16)
PANEL_CHECKS_CA_FILE = env_str("PANEL_CHECKS_CA_FILE", "")
# /metrics (Prometheus): the SHA-256 (hex) of the bearer token scrapers send; blank: off.
PANEL_METRICS_TOKEN_SHA256 = env_str("PANEL_METRICS_TOKEN_SHA256", "")

LOGIN_FAILURE_LIMIT = env_int("PANEL_LOGIN_FAILURE_LIMIT", 5)
LOGIN_FAILURE_WINDOW = env_int("PANEL_LOGIN_FAILURE_WINDOW", 300)
LOGIN_COOLDOWN = env_int("PANEL_LOGIN_COOLDOWN", 900)
OTP_TOTP_ISSUER = env_str("PANEL_OTP_ISSUER", "Unified Hosting Panel")

EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "panel@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise wants it even when using finders
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Fingerprinted names and gzip copies made by collectstatic, served with far-future
    # caching; files not collected yet keep plain names (see core/staticfiles.py).
    "staticfiles": {"BACKEND": "core.staticfiles.PanelStaticStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_ROOT = VAR_DIR / "media"
MEDIA_URL = "media/"

SESSION_COOKIE_AGE = env_int("PANEL_SESSION_AGE", 12 * 3600)
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Strict"
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = SECURE
CSRF_COOKIE_SECURE = SECURE
SECURE_SSL_REDIRECT = SECURE
SECURE_HSTS_SECONDS = env_int("PANEL_HSTS_SECONDS", 31536000) if SECURE else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE
SECURE_HSTS_PRELOAD = SECURE
SECURE_REDIRECT_EXEMPT = [r"^healthz(/live|/ready)?$", r"^metrics$"]

# Strict CSP: nothing inline, nothing from elsewhere. The API docs view relaxes styles only.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api.authentication.ApiTokenAuthentication",
        "accounts.api.authentication.VerifiedSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "accounts.api.permissions.TokenScope",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
        "rest_framework.filters.SearchFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "core.api.exceptions.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "core.api.parsers.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("PANEL_API_ANON_RATE", "30/minute"),
        "user": env_str("PANEL_API_USER_RATE", "1200/minute"),
    },
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Unified Hosting Panel API",
    "DESCRIPTION": "Servers, websites, DNS, VPS and monitoring. Authenticate with "
    "`Authorization: Bearer <token>` (tokens from Account → API tokens).\n\n"
    "**Webhooks.** Register a URL at `/api/v1/webhooks/` with the `events` to receive "
    "(operation.succeeded, operation.failed, website.created, website.suspended, "
    "certificate.issued, certificate.failing, vps.state_changed, alert.fired, alert.resolved, "
    "invoice.issued, invoice.paid) and a `secret`. Each event is POSTed as JSON `{id, type, "
    "timestamp, data}` with headers `X-Panel-Event`, `X-Panel-Delivery`, `X-Panel-Timestamp` "
    "and `X-Panel-Signature: sha256=<hex>`, the HMAC-SHA256 of `<timestamp>.<body>` with the "
    "secret. Refuse timestamps more than five minutes off and drop repeats by the body's "
    "`id` (signed; the headers are not). Answer 2xx; no "
    "answer, 5xx, 408 and 429 are retried with exponential backoff. Deliveries, with the "
    "receiver's response codes, are at `/api/v1/webhook-deliveries/`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ServerKindEnum": "servers.models.Server.Kind",
        "ServerStatusEnum": "servers.models.Server.Status",
        "OperationStateEnum": "core.models.Operation.State",
        "CertificateStatusEnum": "websites.certificates.models.Certificate.Status",
        "WebsiteStatusEnum": "websites.models.Website.Status",
        "SystemAccountStatusEnum": "websites.models.SystemAccount.Status",
        "DatabaseStatusEnum": "websites.databases.models.Status",
        "ZoneStatusEnum": "dns.models.Zone.Status",
        "BackupTargetStatusEnum": "backups.models.BackupTarget.Status",
        "MailStatusEnum": "mail.models.Status",
        "HypervisorStatusEnum": "vps.models.Hypervisor.Status",
        "DeliveryStateEnum": "hooks.models.Delivery.State",
        "InvoiceKindEnum": "billing.models.Invoice.Kind",
        "InvoiceStateEnum": "billing.models.Invoice.State",
        "PaymentStateEnum": "billing.models.Payment.State",
        "PaymentMethodEnum": "billing.models.Payment.Method",
    },
}

# plain: one readable line per message; json: one JSON object per line (core/jsonlog.py).
PANEL_LOG_FORMAT = env_str("PANEL_LOG_FORMAT", "plain")
if PANEL_LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"PANEL_LOG_FORMAT must be plain or json, got {PANEL_LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "core.jsonlog.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": PANEL_LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("PANEL_LOG_LEVEL", "INFO")},
    "loggers": {
        "django_q": {"level": "WARNING"},
        # paramiko logs a failed connection as an ERROR traceback, line by line; the
        # operation that tried reports it once, in its own words (core.operations).
        "paramiko": {"level": "CRITICAL"},
        # WeasyPrint logs each step of every invoice PDF at INFO.
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
    },
}
