"""Fixtures shared by the tiers: a RabbitMQ virtual host per session, real worker
processes, a private node. The integration, faults and browser tiers require the broker
(their conftest.py); the unit tier needs no broker and no database server."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from tests.harness import BrokerClient, RabbitNode, WorkerProcess, rabbitmqctl

BROKER_HELP = (
    "RabbitMQ is not reachable on 127.0.0.1:5672, and the test suite needs a real broker. "
    "Start it with `rabbitmq-server -detached` (Debian: `apt-get install -y rabbitmq-server`)."
)


def _broker_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def rabbit_vhost() -> Iterator[str]:
    """Create this session's virtual host on the shared broker, and delete it afterwards."""
    if not _broker_up():
        pytest.fail(BROKER_HELP, pytrace=False)
    vhost = settings.TEST_VHOST
    rabbitmqctl("add_vhost", vhost, check=False)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield vhost
    from carrot.broker.relays import relays

    relays.stop_all(2)
    rabbitmqctl("delete_vhost", vhost, check=False)


WORK_QUEUES = ("default", "other")


@pytest.fixture
def broker() -> Iterator[BrokerClient]:
    """A raw client on this session's vhost; carrot's queues are purged before and after."""
    client = BrokerClient(settings.TEST_BROKER)
    queues = [q for name in WORK_QUEUES for q in (name, f"{name}.dlq")]

    def purge() -> None:
        for queue in queues:
            try:
                client.purge(queue)
            except Exception:  # the queue may not exist yet
                client.close()

    purge()
    yield client
    purge()
    client.close()


@pytest.fixture
def worker_factory(tmp_path: Path, broker: BrokerClient) -> Iterator[object]:
    """Start ``manage.py carrot`` subprocesses; all are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(*args: str, **env: str) -> WorkerProcess:
        proc = WorkerProcess(tmp_path / f"worker-{len(started) + 1}.log", list(args), **env)
        started.append(proc.start())
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def worker(worker_factory: object) -> WorkerProcess:
    """One running worker on the test vhost (no scheduler), ready to consume."""
    return worker_factory("--no-scheduler").wait_ready()  # type: ignore[operator]


@pytest.fixture(scope="session")
def rabbit_node() -> Iterator[RabbitNode]:
    """A private RabbitMQ node, started once per session, for tests that break the broker."""
    if shutil.which("rabbitmq-server") is None:
        pytest.fail(
            "rabbitmq-server is not installed; fault tests start a private node. "
            "Install it with `apt-get install -y rabbitmq-server`.",
            pytrace=False,
        )
    base = Path(tempfile.mkdtemp(prefix="carrot-rabbit-"))
    os.chmod(base, 0o755)  # noqa: S103  (the node runs as the rabbitmq user)
    node = RabbitNode(base).start()
    yield node
    node.shutdown()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def node(rabbit_node: RabbitNode) -> Iterator[RabbitNode]:
    """The private node as this process's broker; afterwards it runs, unblocked and empty."""
    from django.test import override_settings

    from carrot.broker.relays import relays

    client = BrokerClient(rabbit_node.url)
    carrot = dict(settings.CARROT, default_broker=rabbit_node.url, publish_timeout=5)
    with override_settings(CARROT=carrot):
        yield rabbit_node
        relays.stop_all(1)
    rabbit_node.ensure_running()
    rabbit_node.ctl("set_vm_memory_high_watermark", "0.4", check=False)
    for queue in ("default", "default.dlq", "other", "other.dlq"):
        try:
            client.purge(queue)
        except Exception:  # not declared on this node yet
            client.close()
    client.close()
