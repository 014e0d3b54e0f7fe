import pytest

from carrot.exceptions import TaskNotRegistered
from carrot.registry import registry


def test_installed_apps_tasks_modules_are_discovered():
    assert "tests.testapp.tasks.add" in registry
    assert registry["tests.testapp.tasks.add"].func.__name__ == "add"


def test_task_modules_functions_are_registered_but_not_private_ones():
    assert "tests.testapp.plain_tasks.plain_multiply" in registry
    assert "tests.testapp.plain_tasks._private_helper" not in registry


def test_unknown_names_raise_with_the_fix():
    with pytest.raises(TaskNotRegistered, match="task_modules"):
        registry["os.system"]
    assert registry.get("os.system") is None


def test_names_are_sorted_and_iteration_yields_tasks():
    names = registry.names()
    assert names == sorted(names)
    assert [t.name for t in registry] == names
