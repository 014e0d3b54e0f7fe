"""The seed's public API keeps working over the new modules."""

import pytest
from django.http import HttpResponse
from django.test import RequestFactory, override_settings
from django.views import View

from carrot.consumer import Consumer, ConsumerSet, add_failure_callback
from carrot.exceptions import TaskNotRegistered
from carrot.models import MessageLog
from carrot.objects import DefaultMessageSerializer, Message, VirtualHost
from carrot.utilities import (
    create_message,
    decorate_class_view,
    decorate_function_view,
    get_host_from_name,
    publish_message,
    validate_task,
)
from tests.harness import wait_until
from tests.testapp import tasks
from tests.testapp.plain_tasks import plain_multiply


def not_registered():
    pass


def test_validate_task_accepts_registered_tasks_functions_and_names():
    assert validate_task(tasks.add) == "tests.testapp.tasks.add"
    assert validate_task(tasks.add.func) == "tests.testapp.tasks.add"
    assert validate_task("tests.testapp.tasks.add") == "tests.testapp.tasks.add"
    assert validate_task(plain_multiply) == "tests.testapp.plain_tasks.plain_multiply"


@pytest.mark.parametrize(
    "bad", ["os.system", "tests.testapp.plain_tasks._private_helper", not_registered, 42]
)
def test_validate_task_refuses_anything_else(bad):
    with pytest.raises(TaskNotRegistered):
        validate_task(bad)


def test_get_host_from_name():
    host = get_host_from_name("other")
    assert isinstance(host, VirtualHost)
    assert host.port == 5672
    assert get_host_from_name(None).url == get_host_from_name("default").url


def test_virtual_host_from_parts_and_masked_str():
    host = VirtualHost(host="h", name="vh", username="u", password="secret", port=1234)
    assert (host.host, host.name, host.port) == ("h", "vh", 1234)
    assert "secret" not in str(host)


@pytest.mark.django_db(transaction=True)
def test_publish_message_like_the_seed(broker):
    log = publish_message(tasks.echo, 1, "a", priority=2, hello=True)
    assert isinstance(log, MessageLog)
    assert (log.task_args, log.task_kwargs, log.priority) == ([1, "a"], {"hello": True}, 2)
    properties, _ = broker.get("default")
    assert properties.message_id == str(log.uuid)


@pytest.mark.django_db(transaction=True)
def test_publish_message_defaults_to_the_task_queue(broker):
    log = publish_message(tasks.on_other_queue, "k")
    assert log.queue == "other"
    assert broker.count("other") == 1


@pytest.mark.django_db(transaction=True)
def test_create_message_then_publish(broker):
    message = create_message("tests.testapp.tasks.add", task_args=(1, 2))
    assert isinstance(message, Message)
    assert MessageLog.objects.count() == 0
    log = message.publish()
    assert message.uuid == log.uuid
    serializer = DefaultMessageSerializer(message)
    assert serializer.body() == {"args": [1, 2], "kwargs": {}}
    assert serializer.properties()["type"] == "tests.testapp.tasks.add"
    assert serializer.get_task(type("P", (), {"type": "tests.testapp.tasks.add"}), b"") is tasks.add
    assert serializer.serialize_arguments('{"args": [1], "kwargs": {}}') == ([1], {})


def test_serializer_never_imports_unknown_tasks():
    with pytest.raises(TaskNotRegistered):
        DefaultMessageSerializer().get_task(type("P", (), {"type": "os.system"}), b"")


def deny(view):
    def wrapped(request, *args, **kwargs):
        return HttpResponse("denied", status=403)

    return wrapped


class Hello(View):
    def get(self, request):
        return HttpResponse("hello")


def test_view_decorating_helpers_apply_decorators_by_path():
    request = RequestFactory().get("/")
    view = decorate_function_view(
        lambda r: HttpResponse("ok"), ["tests.integration.test_compat.deny"]
    )
    assert view(request).status_code == 403
    cls = decorate_class_view(Hello, ["tests.integration.test_compat.deny"])
    assert cls.as_view()(request).status_code == 403
    assert Hello.as_view()(request).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_consumer_set_consumes_in_process_and_runs_failure_callbacks(broker):
    seen = []
    add_failure_callback(lambda log, exc: seen.append((log.uuid, str(exc))))
    consumers = ConsumerSet(get_host_from_name("default"), "default", concurrency=2)
    assert isinstance(consumers.consumer, Consumer)
    assert consumers.consumer.concurrency == 2
    consumers.start_consuming()
    try:
        ok = tasks.add.delay(20, 22)
        bad = tasks.fail.delay("callback")
        wait_until(lambda: MessageLog.objects.finished().count() == 2, 20)
        wait_until(lambda: seen, 10)
    finally:
        assert consumers.stop_consuming(timeout=20)
        from carrot.worker.consumer import _global_failure_callbacks

        _global_failure_callbacks.clear()
    assert MessageLog.objects.get(pk=ok.pk).output == 42
    assert seen == [(bad.uuid, "callback")]


def test_consumer_seed_hooks():
    consumer = Consumer(None, "default")
    props = type("P", (), {"type": "x.y", "message_id": "not-a-uuid"})
    assert consumer.get_task_type(props, b"") == "x.y"
    assert consumer.get_message_log(props, b"") is None


def test_consumer_host_override_uses_that_broker():
    with override_settings(CARROT={"queues": [{"name": "q"}]}):
        consumer = Consumer(VirtualHost(url="amqp://a:b@elsewhere:5672/v"), "q")
    assert consumer.queue.broker.host == "elsewhere"
