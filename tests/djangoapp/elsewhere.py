"""A Django task decorated for Django's own ImmediateBackend, not for carrot."""

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task


@task(backend="immediate")
def elsewhere(value):
    return value
