from datetime import timedelta

import pytest
from django.test import override_settings

from carrot.conf import DEFAULT_BROKER_URL, get_config, parse, parse_broker
from carrot.exceptions import CarrotConfigError, UnknownQueue


def ids(problems):
    return [p.id for p in problems]


def test_no_setting_means_local_guest_broker_and_one_default_queue():
    config, problems = parse(None)
    assert problems == []
    assert config.default_broker.url == DEFAULT_BROKER_URL
    assert config.default_broker.host == "localhost"
    assert config.default_broker.port == 5672
    assert config.default_broker.vhost == "/"
    assert config.queue_names == ("default",)
    assert config.queue("default").concurrency == 1
    assert config.monitor_authentication is None
    assert config.completed_retention == timedelta(days=3)


def test_url_broker_is_parsed_and_the_password_never_displayed():
    broker = parse_broker("amqps://bob:s%40cret@rabbit.example:5999/my%2Fvhost")
    assert (broker.host, broker.port, broker.vhost) == ("rabbit.example", 5999, "my/vhost")
    assert (broker.username, broker.password, broker.secure) == ("bob", "s@cret", True)
    assert "s@cret" not in broker.display_url and "s%40cret" not in broker.display_url
    assert "s@cret" not in repr(broker)


def test_seed_dict_broker_is_accepted():
    broker = parse_broker(
        {"host": "10.0.0.1", "port": 5673, "name": "vh", "username": "u", "password": "p"}
    )
    assert broker.url == "amqp://u:p@10.0.0.1:5673/vh"
    assert broker.vhost == "vh"


@pytest.mark.parametrize("value", ["http://x/", 42, {"host": ""}, {"hots": "x"}])
def test_bad_broker_is_an_error_naming_the_key(value):
    _, problems = parse({"default_broker": value})
    assert ids(problems) == ["carrot.E002"]
    assert "CARROT['default_broker']" in problems[0].msg


def test_queues_inherit_the_default_broker_and_default_is_added():
    config, problems = parse(
        {"default_broker": "amqp://a:b@h:1/v", "queues": [{"name": "reports", "concurrency": 3}]}
    )
    assert problems == []
    assert config.queue_names == ("default", "reports")
    assert config.queue("reports").broker.host == "h"
    assert config.queue("reports").concurrency == 3


@pytest.mark.parametrize(
    ("queues", "fragment"),
    [
        ("nope", "expected a list"),
        ([{"concurrency": 2}], "'name'"),
        ([{"name": "a"}, {"name": "a"}], "used twice"),
        ([{"name": "a", "concurrency": 0}], "'concurrency'"),
        ([{"name": "a", "consumable": "yes"}], "'consumable'"),
        ([{"name": "a", "max_priority": 300}], "'max_priority'"),
        ([{"name": "a.dlq"}], "collides"),
        (["a"], "expected a dict"),
    ],
)
def test_bad_queues_are_reported_with_their_index(queues, fragment):
    _, problems = parse({"queues": queues})
    assert [p for p in problems if p.id == "carrot.E003" and fragment in p.msg], problems


def test_unknown_keys_are_warnings_with_a_suggestion():
    _, problems = parse({"queus": []})
    assert ids(problems) == ["carrot.W001"]
    assert problems[0].warning
    assert "queues" in problems[0].hint


def test_empty_monitor_authentication_needs_explicit_public_opt_in():
    _, problems = parse({"monitor_authentication": []})
    assert ids(problems) == ["carrot.E007"]
    config, problems = parse({"monitor_authentication": [], "monitor_public": True})
    assert problems == []
    assert config.monitor_authentication == ()


@pytest.mark.parametrize("key", ["max_message_bytes", "heartbeat", "publish_timeout"])
def test_numbers_are_validated(key):
    _, problems = parse({key: "ten"})
    assert ids(problems) == ["carrot.E008"]


def test_retention_accepts_seconds_and_none():
    assert parse({"completed_retention": 60})[0].completed_retention == timedelta(seconds=60)
    assert parse({"completed_retention": None})[0].completed_retention is None
    assert ids(parse({"completed_retention": -1})[1]) == ["carrot.E008"]


def test_get_config_follows_override_settings_and_raises_on_errors():
    with override_settings(CARROT={"queues": [{"name": "x"}]}):
        assert "x" in get_config().queue_names
    assert "x" not in get_config().queue_names
    with override_settings(CARROT={"queues": "bad"}), pytest.raises(CarrotConfigError):
        get_config()


def test_unknown_queue_lists_the_known_ones():
    with pytest.raises(UnknownQueue, match="Configured queues: default"):
        parse(None)[0].queue("nope")


def test_cancel_grace_defaults_to_ten_seconds_and_must_be_a_number():
    assert parse({})[0].cancel_grace == 10.0
    assert parse({"cancel_grace": 2.5})[0].cancel_grace == 2.5
    config, problems = parse({"cancel_grace": -1})
    assert config.cancel_grace == 10.0
    assert ids(problems) == ["carrot.E008"] and "cancel_grace" in problems[0].msg
