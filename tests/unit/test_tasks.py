import pytest
from django.test import override_settings

from carrot import InvalidTask, Task, task
from carrot.exceptions import MessageTooLarge, UnknownQueue
from carrot.models import MessageLog
from carrot.registry import registry
from tests.testapp.tasks import add, on_other_queue


def module_level(x, y=1):
    """Add things."""
    return x + y


def test_bare_decorator_registers_by_module_and_qualname():
    t = task(module_level)
    assert isinstance(t, Task)
    assert t.name == "tests.unit.test_tasks.module_level"
    assert registry[t.name] is t
    assert (t.queue, t.priority) == ("default", 0)
    assert t.__doc__ == "Add things." and t.__name__ == "module_level"
    assert t.__wrapped__ is module_level


def test_plain_call_runs_inline():
    assert add(2, 3) == 5


def test_options_are_kept():
    assert (on_other_queue.queue, on_other_queue.priority) == ("other", 3)


def test_nested_functions_and_lambdas_are_refused_at_decoration():
    def inner():
        pass

    with pytest.raises(InvalidTask, match="module-level"):
        task(inner)
    with pytest.raises(InvalidTask, match="module-level"):
        task(lambda: None)


def test_async_functions_classes_and_double_decoration_are_refused():
    async def coro():
        pass

    coro.__qualname__ = "coro"
    with pytest.raises(InvalidTask, match="async"):
        task(coro)
    with pytest.raises(InvalidTask, match="only decorate a function"):
        task(dict)
    with pytest.raises(InvalidTask, match="already a task"):
        task(add)


def test_priority_and_queue_are_validated_against_settings():
    with pytest.raises(InvalidTask, match="out of range"):
        task(priority=11)(module_level)
    with pytest.raises(InvalidTask, match="must be an integer"):
        task(priority="high")(module_level)
    with pytest.raises(InvalidTask, match="Queue 'nope' is not configured"):
        task(queue="nope")(module_level)
    with override_settings(CARROT={"queues": [{"name": "big", "max_priority": 200}]}):
        assert task(queue="big", priority=150)(module_level).priority == 150


@pytest.mark.django_db
def test_delay_refuses_non_json_arguments_before_writing_anything():
    with pytest.raises(TypeError, match="keyword argument 'when' is a builtins.object"):
        add.delay(1, when=object())
    assert not MessageLog.objects.exists()


@pytest.mark.django_db
def test_delay_refuses_oversize_arguments_and_unknown_queues():
    with pytest.raises(MessageTooLarge):
        add.delay("x" * (2 * 1024 * 1024), 1)
    with pytest.raises(UnknownQueue):
        add.apply_async(args=(1, 2), queue="nope")
    with pytest.raises(ValueError, match="out of range"):
        add.apply_async(args=(1, 2), priority=99)
    assert not MessageLog.objects.exists()
