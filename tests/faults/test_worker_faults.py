"""A consuming worker through a broker restart on a private node."""

from __future__ import annotations

import pytest

from tests.harness import finished, node_worker
from tests.testapp.tasks import add

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.fault
def test_the_worker_reconnects_after_the_broker_restarts(worker_factory, node):
    # The node fixture restores the private node (running, empty) even if this fails.
    proc = node_worker(worker_factory, node)
    assert finished(add.delay(1, 1)).status == "COMPLETED"
    node.stop_app()
    proc.wait_for_log("reconnecting in", 20)
    node.start_app()
    proc.wait_for_log(r"Consuming '", 60, count=4)
    log = finished(add.delay(2, 2), 30)
    assert log.output == 4
    assert proc.proc.poll() is None
