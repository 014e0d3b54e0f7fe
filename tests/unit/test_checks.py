import pytest
from django.core import checks
from django.test import override_settings


def run_checks():
    return [m for m in checks.run_checks(tags=["carrot"])]


def test_the_test_settings_pass_the_checks():
    assert run_checks() == []


@pytest.mark.parametrize(
    ("carrot", "expected_id"),
    [
        ("not a dict", "carrot.E001"),
        ({"default_broker": "http://x"}, "carrot.E002"),
        ({"queues": [{"name": ""}]}, "carrot.E003"),
        ({"task_modules": "tests"}, "carrot.E004"),
        ({"task_modules": ["tests.no_such_module"]}, "carrot.E005"),
        ({"monitor_authentication": "x"}, "carrot.E006"),
        ({"monitor_authentication": ["tests.no_such.decorator"]}, "carrot.E006"),
        ({"monitor_authentication": []}, "carrot.E007"),
        ({"heartbeat": -1}, "carrot.E008"),
        ({"queues": [{"name": "q", "consumer_class": "builtins.dict"}]}, "carrot.E009"),
        ({"queus": []}, "carrot.W001"),
        ({"queues": [{"name": "q", "threads": 2}]}, "carrot.W002"),
    ],
)
def test_each_problem_has_a_stable_id(carrot, expected_id):
    with override_settings(CARROT=carrot):
        messages = run_checks()
    assert expected_id in [m.id for m in messages], messages
    for message in messages:
        assert message.msg.endswith(".")
        assert message.level >= (
            checks.WARNING if message.id.startswith("carrot.W") else checks.ERROR
        )


# ---------------------------------------------------------------- SQLite as users configure it


def sqlite(**options):
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": "x", "OPTIONS": options}


def test_sqlite_without_wal_gets_a_warning_with_the_options_to_add():
    from carrot.checks import SQLITE_OPTIONS, sqlite_warnings

    [warning] = sqlite_warnings("default", sqlite())
    assert warning.id == "carrot.W012"
    assert "without WAL (journal_mode=WAL in init_command) and transaction_mode" in warning.msg
    assert "database is locked" in warning.msg
    assert repr(SQLITE_OPTIONS) in warning.hint
    assert sqlite_warnings("default", sqlite(**SQLITE_OPTIONS)) == []
    [warning] = sqlite_warnings("default", sqlite(init_command="PRAGMA journal_mode = wal;"))
    assert "without transaction_mode='IMMEDIATE':" in warning.msg


def test_other_databases_get_no_sqlite_warning():
    from carrot.checks import check_sqlite, sqlite_warnings

    postgres = {"ENGINE": "django.db.backends.postgresql", "NAME": "x"}
    assert sqlite_warnings("default", postgres) == []
    assert check_sqlite() == []  # the test settings configure SQLite as recommended
