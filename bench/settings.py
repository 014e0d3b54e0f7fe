"""Settings for the benchmarks: a dedicated vhost and database, SQLite (WAL) or PostgreSQL."""

import os
import tempfile
from pathlib import Path

SECRET_KEY = "bench-not-secret"  # noqa: S105
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "carrot",
    "bench",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "bench.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "/login/"

VHOST = os.environ.get("CARROT_BENCH_VHOST", "carrot-bench")
CARROT = {
    "default_broker": f"amqp://guest:guest@127.0.0.1:5672/{VHOST}",
    "queues": [
        {
            "name": "default",
            "concurrency": int(os.environ.get("CARROT_BENCH_THREADS", "2")),
            # Empty: the default (the concurrency).
            "prefetch": int(os.environ["CARROT_BENCH_PREFETCH"])
            if os.environ.get("CARROT_BENCH_PREFETCH")
            else None,
        }
    ],
    "completed_retention": None,
    "scheduler": {"enabled": False},
}

_DB = os.environ.get("CARROT_BENCH_DB", "sqlite")
if _DB == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("CARROT_BENCH_DB_NAME", "carrot_bench"),
            "HOST": "127.0.0.1",
            "PORT": "5432",
            "USER": "postgres",
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get(
                "CARROT_BENCH_DB_NAME", str(Path(tempfile.gettempdir()) / "carrot-bench.sqlite3")
            ),
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    }
