"""Settings for the test suite; the database and broker come from the environment.

CARROT_TEST_DB=sqlite (default) or postgres. Worker subprocesses started by the tests get
CARROT_TEST_DB_NAME so they open the test database itself.
"""

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "carrot-tests-not-secret"  # noqa: S105
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "carrot",
    "tests.testapp",
    "tests.djangoapp",
]
try:  # Django 5.2: Django's task framework comes from the backport, an installed app
    import django.tasks  # noqa: F401

    _FRAMEWORK = "django.tasks"
except ImportError:
    INSTALLED_APPS.append("django_tasks")
    _FRAMEWORK = "django_tasks"
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
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
            ]
        },
    }
]
STATIC_URL = "/static/"

# One RabbitMQ virtual host per test session (created and deleted by tests/conftest.py),
# inherited by worker subprocesses through the environment.
TEST_VHOST = os.environ.setdefault("CARROT_TEST_VHOST", f"carrot-test-{os.getpid()}")
TEST_BROKER = os.environ.get(
    "CARROT_TEST_BROKER", f"amqp://guest:guest@127.0.0.1:5672/{TEST_VHOST}"
)
CARROT = {
    "default_broker": TEST_BROKER,
    "queues": [
        {"name": "default", "concurrency": 2},
        {
            "name": "other",
            "consumer_class": os.environ.get(
                "CARROT_TEST_OTHER_CONSUMER", "carrot.consumer.Consumer"
            ),
        },
    ],
    "task_modules": ["tests.testapp.plain_tasks"],
    "heartbeat": int(os.environ.get("CARROT_TEST_HEARTBEAT", "10")),
    "shutdown_timeout": float(os.environ.get("CARROT_TEST_SHUTDOWN_TIMEOUT", "20")),
    "max_interruptions": int(os.environ.get("CARROT_TEST_MAX_INTERRUPTIONS", "3")),
    "publish_timeout": float(os.environ.get("CARROT_TEST_PUBLISH_TIMEOUT", "10")),
    "cancel_grace": 1.0,
}

# Django's task API on carrot (tests/djangoapp). "retrying" retries each task twice,
# "limited" stops a task after a second;
# "immediate" is Django's own backend, for a task carrot must not take.
TASKS = {
    "immediate": {"BACKEND": f"{_FRAMEWORK}.backends.immediate.ImmediateBackend"},
    "default": {"BACKEND": "carrot.backends.RabbitMQBackend"},
    "retrying": {
        "BACKEND": "carrot.backends.RabbitMQBackend",
        "QUEUES": ["default"],
        "OPTIONS": {"retries": 2, "retry_backoff": 0.2, "retry_jitter": False},
    },
    "limited": {"BACKEND": "carrot.backends.RabbitMQBackend", "OPTIONS": {"time_limit": 1}},
}

_DB = os.environ.get("CARROT_TEST_DB", "sqlite")
_TMP = Path(os.environ.get("CARROT_TEST_TMP", tempfile.gettempdir()))
if _DB == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("CARROT_TEST_DB_NAME", "test"),
            "HOST": os.environ.get("CARROT_TEST_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("CARROT_TEST_PG_PORT", "5432"),
            "USER": os.environ.get("CARROT_TEST_PG_USER", "postgres"),
            "TEST": {"NAME": f"test_carrot_{TEST_VHOST.replace('-', '_')}"},
        }
    }
elif _DB == "sqlite":
    _name = os.environ.get("CARROT_TEST_DB_NAME", str(_TMP / f"{TEST_VHOST}.sqlite3"))
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _name,
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": float(os.environ.get("CARROT_TEST_SQLITE_TIMEOUT", "20")),
            },
            # A file, not :memory:, so worker subprocesses share it.
            "TEST": {"NAME": _name},
        }
    }
else:
    raise RuntimeError(f"CARROT_TEST_DB must be 'sqlite' or 'postgres', got {_DB!r}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
}
