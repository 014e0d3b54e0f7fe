"""Every MessageLog transition is defined once (``carrot.models.lifecycle``); the ORM's
``apply()`` and the worker's batched SQL (``apply_each``, ``claim_many``) are built from
that definition and must leave identical rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.forms.models import model_to_dict

from carrot.models import MessageLog
from carrot.models import lifecycle as lc
from carrot.models.history import attempts_of

pytestmark = pytest.mark.django_db

ETA = datetime(2030, 1, 1, tzinfo=UTC)
# The parameters each transition takes, with values that show in the row.
PARAMS: dict[str, dict[str, Any]] = {
    "claim": {"worker": "host:1"},
    "resume": {"worker": "host:2"},
    "complete": {"output": {"sum": 3}, "log": [{"message": "done"}]},
    "fail": {
        "exception": "ValueError: x",
        "exception_type": "builtins.ValueError",
        "traceback": "tb",
        "log": [{"message": "oops"}],
    },
    "retry": {
        "eta": ETA,
        "exception": "E: 1",
        "exception_type": "builtins.KeyError",
        "traceback": "tb",
        "log": [],
    },
    "give up": {"exception": "Gave up"},
    "requeue": {},
    "reject": {"exception": lc.rejected("bad body")},
    "not published": {"exception": lc.not_published("refused")},
    "purge": {"exception": "Purged"},
    "log so far": {"log": [{"message": "so far"}]},
    "cancel queued": {"exception": "TaskCancelled: before", "cancelled_by": "ops"},
    "ask to cancel": {"cancelled_by": "ops"},
    "cancel": {"exception": "TaskCancelled: x", "traceback": "tb", "log": [{"message": "c"}]},
}
TIMES = ("start_time", "completion_time", "failure_time", "publish_time", "cancelled_at")


def row_in(status: str) -> MessageLog:
    """A row in ``status`` with every field the transitions touch set to something."""
    return MessageLog.objects.create(
        uuid=uuid.uuid4(),
        task="tests.testapp.tasks.add",
        status=status,
        attempts=2,
        interruptions=1,
        worker="before:1",
        output="old",
        exception="old error",
        exception_type="builtins.OSError",
        traceback="old tb",
        attempt_history=[{"worker": "first:1", "started": "2029-12-30T00:00:00+00:00"}],
        log=[{"message": "old"}],
        eta=ETA - timedelta(days=1),
        start_time=ETA - timedelta(days=2),
    )


def state(log: MessageLog) -> dict[str, Any]:
    """The row as it is stored, without its identity; times only as set or not."""
    data = model_to_dict(MessageLog.objects.get(pk=log.pk))
    for key in ("id", "uuid"):
        data.pop(key, None)
    for key in TIMES:
        data[key] = data[key] is not None
    return data


def test_every_transition_is_covered_here():
    assert {t.name for t in lc.TRANSITIONS} == set(PARAMS)


@pytest.mark.parametrize("transition", lc.TRANSITIONS, ids=lambda t: t.name)
def test_the_orm_and_the_batched_sql_write_the_same_row(transition):
    source = transition.sources[0]
    by_orm, by_sql = row_in(source), row_in(source)
    values = PARAMS[transition.name]
    assert MessageLog.objects.filter(pk=by_orm.pk).apply(transition, **values) == 1
    MessageLog.objects.apply_each(transition, [(by_sql.pk, by_sql.attempts, values)])
    assert state(by_orm) == state(by_sql)
    assert state(by_orm)["status"] == transition.target


@pytest.mark.parametrize("transition", lc.TRANSITIONS, ids=lambda t: t.name)
def test_a_transition_leaves_rows_outside_its_sources_alone(transition):
    others = [s for s in (lc.PUBLISHED, lc.IN_PROGRESS, lc.FAILED, lc.COMPLETED)]
    others = [s for s in others if s not in transition.sources]
    rows = [row_in(s) for s in others]
    before = [state(r) for r in rows]
    values = PARAMS[transition.name]
    assert MessageLog.objects.filter(pk__in=[r.pk for r in rows]).apply(transition, **values) == 0
    MessageLog.objects.apply_each(transition, [(r.pk, r.attempts, values) for r in rows])
    assert [state(r) for r in rows] == before


def test_the_batched_sql_skips_a_row_at_another_attempt():
    log = row_in(lc.IN_PROGRESS)
    before = state(log)
    MessageLog.objects.apply_each(lc.COMPLETE, [(log.pk, log.attempts - 1, PARAMS["complete"])])
    assert state(log) == before  # a later attempt's row is never overwritten


def test_claim_many_claims_like_mark_started():
    by_orm, by_sql = row_in(lc.PUBLISHED), row_in(lc.PUBLISHED)
    assert MessageLog.objects.filter(pk=by_orm.pk).mark_started(worker="host:1") == 1
    spelled = str(by_sql.uuid).upper()  # a message id in another spelling of the UUID
    claimed = MessageLog.objects.claim_many([spelled], "host:1")
    assert claimed == [(by_sql.pk, spelled, 3)]
    assert state(by_orm) == state(by_sql)
    assert MessageLog.objects.claim_many([spelled], "host:1") == []  # claimed only once


def test_a_transition_refuses_parameters_it_does_not_take():
    with pytest.raises(TypeError, match="takes"):
        MessageLog.objects.all().apply(lc.COMPLETE, output=1)
    with pytest.raises(TypeError, match="takes"):
        lc.REQUEUE.changes({"output": 1})


# ---------------------------------------------------------------------- attempt history


def history_after(transition: lc.Transition, log: MessageLog, *, orm: bool) -> list[Any]:
    values = PARAMS[transition.name]
    if orm:
        MessageLog.objects.filter(pk=log.pk).apply(transition, **values)
    else:
        MessageLog.objects.apply_each(transition, [(log.pk, log.attempts, values)])
    return attempts_of(MessageLog.objects.get(pk=log.pk))


@pytest.mark.parametrize("orm", [True, False], ids=["orm", "sql"])
def test_a_retry_archives_the_attempt_with_its_error(orm):
    before = row_in(lc.IN_PROGRESS)  # attempt 2 runs on before:1; attempt 1 is archived
    attempts = history_after(lc.RETRY, before, orm=orm)
    assert [(a.number, a.worker) for a in attempts] == [(1, "first:1"), (2, "before:1")]
    second = attempts[1]
    assert second.started == ETA - timedelta(days=2)
    assert (second.exception_type, second.exception, second.traceback) == (
        "builtins.KeyError",
        "E: 1",
        "tb",
    )
    # The next claim starts attempt 3 without touching the history.
    MessageLog.objects.claim_many([str(before.uuid)], "next:1")
    after_claim = attempts_of(MessageLog.objects.get(pk=before.pk))
    assert [(a.number, a.worker, a.failed) for a in after_claim] == [
        (1, "first:1", False),
        (2, "before:1", True),
        (3, "next:1", False),
    ]


@pytest.mark.parametrize("orm", [True, False], ids=["orm", "sql"])
def test_an_interrupted_attempt_is_archived_without_an_error(orm):
    log = row_in(lc.IN_PROGRESS)
    attempts = history_after(lc.RESUME, log, orm=orm)
    assert [(a.number, a.worker, a.failed) for a in attempts] == [
        (1, "first:1", False),
        (2, "before:1", False),  # its stale error columns are not copied
        (3, "host:2", False),
    ]


@pytest.mark.parametrize("orm", [True, False], ids=["orm", "sql"])
def test_a_requeue_archives_the_failed_attempt_once(orm):
    log = row_in(lc.FAILED)
    attempts = history_after(lc.REQUEUE, log, orm=orm)
    assert [(a.number, a.worker, a.exception_type) for a in attempts] == [
        (1, "first:1", ""),
        (2, "before:1", "builtins.OSError"),
    ]
    # Failed again without running (rejected): nothing new to archive.
    MessageLog.objects.filter(pk=log.pk).apply(lc.REJECT, exception=lc.rejected("bad"))
    again = history_after(lc.REQUEUE, log, orm=orm)
    assert len(again) == 2


def test_the_latest_attempt_counts_its_error_once_the_row_failed():
    log = row_in(lc.IN_PROGRESS)
    assert [a.failed for a in attempts_of(log)] == [False, False]  # still running
    MessageLog.objects.filter(pk=log.pk).mark_failed(
        exception="ValueError: x", exception_type="builtins.ValueError", traceback="tb"
    )
    last = attempts_of(MessageLog.objects.get(pk=log.pk))[-1]
    assert (last.worker, last.exception_type, last.traceback) == (
        "before:1",
        "builtins.ValueError",
        "tb",
    )
