"""A CARROT['task_modules'] module: its plain functions may run as tasks."""


def plain_multiply(a, b):
    return a * b


def _private_helper():
    return "never a task"
