"""carrot.backends without a broker: the priority mapping, run_after, OPTIONS and QUEUES,
validation, the registry entry, the row -> TaskResult mapping and the system checks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from django.utils import timezone

from carrot.backends import compat
from carrot.backends.entries import DjangoTaskEntry, django_task_of
from carrot.backends.rabbitmq import RabbitMQBackend, _Unavailable, carrot_priority, eta_of
from carrot.backends.results import django_priority, result_of, task_for
from carrot.checks import check_task_backends
from carrot.models import MessageLog
from carrot.models import lifecycle as lc
from carrot.models.history import attempts_of
from carrot.registry import registry
from tests.djangoapp import tasks as django_tasks
from tests.testapp import tasks as carrot_tasks

BACKEND = "carrot.backends.RabbitMQBackend"


def backend(**params) -> RabbitMQBackend:
    return RabbitMQBackend("unit", {"BACKEND": BACKEND, **params})


# ---------------------------------------------------------------- priority and run_after


@pytest.mark.parametrize("top", [1, 10, 255])
def test_django_priorities_map_onto_the_queue_in_order(top):
    mapped = [carrot_priority(p, top) for p in range(-100, 101)]
    assert mapped[0] == 0 and mapped[-1] == top
    assert mapped == sorted(mapped)  # monotonic: a higher Django priority never runs later
    assert all(0 <= p <= top for p in mapped)


def test_the_default_django_priority_is_the_middle_of_the_queue():
    assert carrot_priority(0, 10) == 5
    assert carrot_priority(-100, 10) == 0 and carrot_priority(100, 10) == 10


def test_a_carrot_priority_reads_back_as_the_django_priority_that_gives_it():
    for p in range(11):  # the test settings' queues have max_priority 10
        assert carrot_priority(django_priority(p, "default"), 10) == p


def test_run_after_is_an_aware_time():
    assert eta_of(None) is None
    at = datetime(2030, 1, 1, tzinfo=UTC)
    assert eta_of(at) == at
    assert eta_of(datetime(2030, 1, 1)).tzinfo is not None  # naive: the current time zone
    before = timezone.now()
    assert before + timedelta(seconds=9) < eta_of(timedelta(seconds=10))


# ---------------------------------------------------------------- configuration


def test_queues_default_to_every_carrot_queue():
    assert backend().queues == set()  # Django's base check accepts any; carrot's checks it
    assert backend(QUEUES=["other"]).queues == {"other"}


def test_options_take_carrot_retry_options():
    b = backend(OPTIONS={"retries": 3, "time_limit": 5})
    assert (b.task_options["retries"], b.task_options["time_limit"]) == (3, 5)
    assert b.task_options["retry_backoff"] == 2.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, "'retries' for TASKS['unit']['OPTIONS'] must be an integer >= 0"),
        ({"time_limit": "soon"}, "'time_limit' for TASKS['unit']['OPTIONS'] must be a number"),
        ({"retry_jitter": "yes"}, "'retry_jitter' for TASKS['unit']['OPTIONS'] must be True"),
    ],
)
def test_bad_options_are_improperly_configured(options, message):
    with pytest.raises(ImproperlyConfigured, match=message.replace("[", r"\[")):
        backend(OPTIONS=options)


def test_check_names_unknown_queues_and_options():
    messages = backend(QUEUES=["default", "nowhere"], OPTIONS={"retries": 1, "colour": 1}).check()
    assert [(m.id, m.msg.split(",")[0]) for m in messages] == [
        ("carrot.E010", "TASKS['unit']['QUEUES'] lists 'nowhere'"),
        ("carrot.W010", "TASKS['unit']['OPTIONS'] has the key 'colour'"),
    ]
    assert backend().check() == []


def test_without_the_framework_the_backend_says_what_to_do():
    with pytest.raises(ImproperlyConfigured, match="upgrade to Django 6.0 or later"):
        _Unavailable("default", {})


def test_the_system_check_reports_a_carrot_backend_without_the_framework(monkeypatch):
    assert check_task_backends() == []  # the test settings have the framework
    monkeypatch.setattr(compat, "available", False)
    [error] = check_task_backends()
    assert error.id == "carrot.E011"
    assert "TASKS['default'], TASKS['retrying']" in error.msg
    assert "@task" in error.msg
    with override_settings(TASKS={"default": {"BACKEND": "somewhere.Else"}}):
        assert check_task_backends() == []


def test_the_system_check_wants_the_backport_installed(monkeypatch):
    from django.apps import apps

    monkeypatch.setattr(compat, "SOURCE", "django_tasks")
    monkeypatch.setattr(apps, "is_installed", lambda name: name != "django_tasks")
    [warning] = check_task_backends()
    assert warning.id == "carrot.W011"


# ---------------------------------------------------------------- validation and registry


def test_validation_refuses_a_queue_carrot_does_not_have():
    with pytest.raises(compat.InvalidTask, match="'nowhere' is not a carrot queue"):
        django_tasks.add.using(queue_name="nowhere")


def test_django_checks_still_apply():
    with pytest.raises(compat.InvalidTask, match="first argument of 'context'"):
        django_tasks.add.using().__class__(
            priority=0,
            func=django_tasks.add.func,
            backend="default",
            queue_name="default",
            run_after=None,
            takes_context=True,
        )
    with pytest.raises(compat.InvalidTask, match="priority"):
        django_tasks.add.using(priority=101)


def test_a_timedelta_run_after_is_accepted():
    assert django_tasks.add.using(run_after=timedelta(seconds=5)).run_after == timedelta(seconds=5)


def test_a_validated_django_task_is_in_the_registry():
    entry = registry["tests.djangoapp.tasks.flaky"]
    assert isinstance(entry, DjangoTaskEntry)
    assert (entry.alias, entry.retries, entry.retry_backoff) == ("retrying", 2, 0.2)
    assert django_task_of("tests.djangoapp.tasks.flaky") is django_tasks.flaky
    assert django_task_of("tests.testapp.tasks.add") is None  # a carrot @task


def test_a_carrot_task_keeps_its_entry_when_seen_as_a_django_task():
    log = MessageLog(task="tests.testapp.tasks.add", queue="default", priority=3)
    task = task_for(log, "default")
    assert task.func is carrot_tasks.add.func and task.module_path == carrot_tasks.add.name
    assert registry["tests.testapp.tasks.add"] is carrot_tasks.add


def test_an_unregistered_task_has_no_result():
    log = MessageLog(task="tests.nowhere.gone", queue="default")
    with pytest.raises(compat.TaskResultDoesNotExist, match="not a registered task"):
        task_for(log, "default")


# ---------------------------------------------------------------- a row as a TaskResult


def row(status: str, **fields) -> MessageLog:
    base = {
        "uuid": uuid.uuid4(),
        "task": "tests.djangoapp.tasks.add",
        "queue": "default",
        "status": status,
        "task_args": [1],
        "task_kwargs": {"b": 2},
        "publish_time": datetime(2030, 1, 1, tzinfo=UTC),
    }
    return MessageLog(**{**base, **fields})


STARTED = datetime(2030, 1, 1, 0, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (lc.PUBLISHED, "READY"),
        (lc.IN_PROGRESS, "RUNNING"),
        (lc.COMPLETED, "SUCCESSFUL"),
        (lc.FAILED, "FAILED"),
    ],
)
def test_statuses_map_onto_django_statuses(status, expected):
    result = result_of(row(status), django_tasks.add, "default")
    assert result.status == compat.TaskResultStatus(expected)
    assert (result.args, result.kwargs, result.backend) == ([1], {"b": 2}, "default")


def test_a_completed_row_has_its_return_value_and_times():
    log = row(
        lc.COMPLETED,
        output={"x": 1},
        attempts=1,
        worker="host:1:a",
        start_time=STARTED,
        completion_time=STARTED + timedelta(seconds=1),
    )
    result = result_of(log, django_tasks.add, "default")
    assert result.return_value == {"x": 1}
    assert result.worker_ids == ["host:1:a"]
    assert result.started_at == result.last_attempted_at == STARTED
    assert result.finished_at == STARTED + timedelta(seconds=1)


def test_a_row_waiting_for_a_retry_is_ready_with_its_errors_so_far():
    log = row(
        lc.PUBLISHED,
        attempts=1,
        worker="host:1:a",
        start_time=STARTED,
        failure_time=STARTED,
        exception="KeyError: 'k'",
        attempt_history=[
            {
                "worker": "host:1:a",
                "started": "2030-01-01 00:01:00",
                "exception_type": "builtins.KeyError",
                "exception": "KeyError: 'k'",
                "traceback": "Traceback ...\nKeyError: 'k'\n",
            }
        ],
    )
    result = result_of(log, django_tasks.add, "default")
    assert result.status == compat.TaskResultStatus.READY
    assert result.finished_at is None  # failure_time of a retried attempt is not the end
    assert [e.exception_class_path for e in result.errors] == ["builtins.KeyError"]
    assert result.worker_ids == ["host:1:a"] and result.started_at == STARTED


def test_a_row_rejected_before_it_ran_has_one_error():
    log = row(lc.FAILED, exception=lc.rejected("bad body"), exception_type=lc.REJECTED_TYPE)
    result = result_of(log, django_tasks.add, "default")
    [error] = result.errors
    assert error.exception_class_path == "carrot.exceptions.MessageRejected"
    assert error.traceback == "Message rejected: bad body"
    assert result.worker_ids == []


# ---------------------------------------------------------------- MessageLog.task_result


@pytest.mark.django_db
def test_task_result_needs_a_carrot_backend():
    log = MessageLog.objects.create(task="tests.testapp.tasks.add", queue="default")
    immediate = f"{compat.SOURCE}.backends.immediate.ImmediateBackend"
    with override_settings(TASKS={"default": {"BACKEND": immediate}}):
        with pytest.raises(ImproperlyConfigured, match="needs a carrot backend in TASKS"):
            log.task_result()
        with pytest.raises(ImproperlyConfigured, match="not a carrot backend"):
            log.task_result("default")
    assert log.task_result().id == str(log.uuid)
    assert log.task_result("retrying").backend == "retrying"


# ---------------------------------------------------------------- review findings


def test_using_another_alias_does_not_move_the_registry_entry():
    before = registry["tests.djangoapp.tasks.add"]
    django_tasks.add.using(backend="retrying")
    entry = registry["tests.djangoapp.tasks.add"]
    assert entry is before
    assert (entry.alias, entry.retries) == ("default", 0)  # the decorator's alias and OPTIONS


def test_a_task_decorated_for_another_backend_is_refused_by_carrot():
    from tests.djangoapp.elsewhere import elsewhere

    assert "tests.djangoapp.elsewhere.elsewhere" not in registry
    with pytest.raises(compat.InvalidTask, match=r"decorated for TASKS\['immediate'\]"):
        elsewhere.using(backend="default")


@pytest.mark.django_db
def test_a_row_on_a_queue_the_backend_does_not_accept_still_has_a_result():
    log = MessageLog.objects.create(task="tests.testapp.tasks.on_other_queue", queue="other")
    result = log.task_result("retrying")  # QUEUES of "retrying" is ["default"]
    assert (result.id, result.task.queue_name, result.backend) == (
        str(log.uuid),
        "other",
        "retrying",
    )


def test_a_failure_after_earlier_attempts_adds_its_own_error():
    log = row(
        lc.FAILED,
        attempts=1,
        worker="host:1:a",
        start_time=STARTED,
        exception="Purged by an operator",
        exception_type=lc.PURGED_TYPE,
        attempt_history=[
            {"worker": "host:1:a", "exception_type": "builtins.KeyError", "exception": "k"}
        ],
    )
    result = result_of(log, django_tasks.add, "default")
    assert [e.exception_class_path for e in result.errors] == [
        "builtins.KeyError",
        "carrot.exceptions.MessagePurged",
    ]
    assert result.worker_ids == ["host:1:a"]


def test_rows_from_before_the_history_keep_their_attempt_count():
    log = row(lc.FAILED, attempts=3, worker="host:1:a", exception="E", exception_type="x.E")
    attempts = attempts_of(log)
    assert [(a.number, a.recorded, a.failed) for a in attempts] == [
        (1, False, False),
        (2, False, False),
        (3, True, True),
    ]
    assert result_of(log, django_tasks.add, "default").attempts == 3
