"""Test helpers: real worker processes, a raw broker client and a private RabbitMQ node."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pika
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 20.0,
    interval: float = 0.05,
    message: str = "condition",
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def finished(log: Any, timeout: float = 30.0) -> Any:
    """Wait until ``log`` is COMPLETED or FAILED and return its row, fresh."""
    from carrot.models import MessageLog

    def done() -> Any:
        row = MessageLog.objects.get(pk=log.pk)
        return row if row.status in MessageLog.FINISHED_STATUSES else None

    return wait_until(done, timeout, message=f"{log.task} to finish")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env(**extra: str) -> dict[str, str]:
    """Return the environment a carrot subprocess needs to use the test database."""
    env = dict(os.environ)
    env["CARROT_TEST_DB_NAME"] = str(connection.settings_dict["NAME"])
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def django_shell(script: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with ``manage.py shell -c`` on the test database; return the result."""
    return subprocess.run(
        [sys.executable, "-m", "django", "shell", "-c", script],
        env=subprocess_env(**env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class WorkerProcess:
    """``python -m django carrot`` in its own process group, logging to a file."""

    def __init__(self, log_path: Path, args: list[str] | None = None, **env: str) -> None:
        self.log_path = log_path
        self.args = args or []
        self.env = subprocess_env(**env)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", "carrot", "--loglevel", "DEBUG", *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern: str, timeout: float = 20.0, count: int = 1) -> None:
        regex = re.compile(pattern)

        def found() -> bool:
            if (
                self.proc is not None
                and self.proc.poll() is not None
                and len(regex.findall(self.log())) < count
            ):
                raise AssertionError(
                    f"worker exited ({self.proc.returncode}) before logging {pattern!r}:\n"
                    + self.log()[-4000:]
                )
            return len(regex.findall(self.log())) >= count

        try:
            wait_until(found, timeout, 0.05, f"worker log {pattern!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- worker log ---\n{self.log()[-4000:]}") from None

    def wait_ready(self, queues: int = 2, timeout: float = 30.0) -> WorkerProcess:
        """Wait until ``queues`` consumers run (text or JSON logs)."""
        self.wait_for_log(r"Consuming '", timeout, count=queues)
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the whole process group."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(25)
        except subprocess.TimeoutExpired:
            self.kill()
        self._log.close()


class BrokerClient:
    """A plain pika client for inspecting queues and publishing raw messages in tests."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: pika.BlockingConnection | None = None

    @property
    def channel(self) -> Any:
        if self._connection is None or not self._connection.is_open:
            self._connection = pika.BlockingConnection(pika.URLParameters(self.url))
            self._channel = self._connection.channel()
        if not self._channel.is_open:
            self._channel = self._connection.channel()
        return self._channel

    def close(self) -> None:
        if self._connection is not None and self._connection.is_open:
            try:
                self._connection.close()
            except (pika.exceptions.AMQPError, OSError):
                pass  # the broker closed it first
        self._connection = None

    def count(self, queue: str) -> int:
        """Return the number of ready messages in ``queue`` (0 if it does not exist).

        This process's relay is flushed first: what delay() handed over is counted.
        """
        from carrot.models.handover import flush

        assert flush(10), "the relay did not publish what delay() handed over"
        try:
            return self.channel.queue_declare(queue, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker:
            return 0

    def consumers(self, queue: str) -> int:
        try:
            return self.channel.queue_declare(queue, passive=True).method.consumer_count
        except pika.exceptions.ChannelClosedByBroker:
            return 0

    def purge(self, *queues: str) -> None:
        from carrot.models.handover import flush

        flush(10)  # what delay() handed over arrives first, then it is purged
        for queue in queues:
            try:
                self.channel.queue_purge(queue)
            except pika.exceptions.ChannelClosedByBroker:
                pass

    def delete(self, *queues: str) -> None:
        for queue in queues:
            self.channel.queue_delete(queue)

    def get(self, queue: str) -> tuple[Any, bytes] | None:
        from carrot.models.handover import flush

        assert flush(10), "the relay did not publish what delay() handed over"
        method, properties, body = self.channel.basic_get(queue, auto_ack=True)
        return None if method is None else (properties, body)

    def publish(self, queue: str, body: bytes, **properties: Any) -> str:
        """Publish straight to ``queue``, bypassing carrot; return the message_id used."""
        props = {
            "content_type": "application/json",
            "message_id": str(uuid.uuid4()),
            "delivery_mode": 2,
        }
        props.update(properties)
        props = {k: v for k, v in props.items() if v is not None}
        self.channel.basic_publish("", queue, body, pika.BasicProperties(**props))
        return props.get("message_id", "")


def rabbitmqctl(
    *args: str, node: str | None = None, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    cmd = ["rabbitmqctl"]
    if node:
        cmd += ["-n", node]
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, check=check, timeout=timeout
    )


class RabbitNode:
    """A private RabbitMQ node (own name, port and data dir) for fault injection.

    Never the machine's shared broker: stopping this one disturbs nobody.
    """

    def __init__(self, base: Path, config: str = "") -> None:
        self.port = free_port()
        self.dist_port = free_port()
        self.name = f"carrot_test_{os.getpid()}_{self.port}@localhost"
        self.dir = base
        self.extra_config = config
        self.env = dict(os.environ)
        self.env.update(
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
            RABBITMQ_LOG_BASE=str(base / "log"),
            RABBITMQ_PID_FILE=str(base / "node.pid"),
            RABBITMQ_CONFIG_FILE=str(base / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
        )

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _prepare(self) -> None:
        (self.dir / "mnesia").mkdir(parents=True, exist_ok=True)
        (self.dir / "log").mkdir(parents=True, exist_ok=True)
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
            + self.extra_config
        )
        (self.dir / "enabled_plugins").write_text("[].\n")
        if os.geteuid() == 0 and shutil.which("chown"):
            # Debian's wrapper runs the node as the rabbitmq user when started by root.
            subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.dir)], check=False)

    def start(self) -> RabbitNode:
        self._prepare()
        self._launch()
        return self

    def _launch(self) -> None:
        subprocess.run(
            ["rabbitmq-server", "-detached"],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait()

    def wait(self) -> None:
        rabbitmqctl(
            "wait", str(self.dir / "node.pid"), "--timeout", "90", node=self.name, timeout=120
        )

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = rabbitmqctl(*args, node=self.name, check=False)
        if check and result.returncode:
            raise AssertionError(
                f"rabbitmqctl {' '.join(args)} on the private node exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}\n--- node log (tail) ---\n{self.log_tail()}"
            )
        return result

    def log_tail(self, lines: int = 40) -> str:
        logs = sorted((self.dir / "log").glob("*.log"))
        if not logs:
            return "(no log)"
        text = "\n".join(p.read_text(errors="replace") for p in logs)
        return "\n".join(text.splitlines()[-lines:])

    def ensure_running(self) -> None:
        """Start the node again if its VM died, so one crash does not fail every test after."""
        if self.ctl("ping", check=False).returncode == 0:
            self.ctl("start_app")
            return
        print(f"private RabbitMQ node was down; starting it again\n{self.log_tail()}")
        self._launch()

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")

    def restart(self) -> None:
        """Full restart: shut the VM down (waits for it) and start again."""
        self.ctl("shutdown")
        self._launch()

    def shutdown(self) -> None:
        self.ctl("shutdown", check=False)


def queue_stats(queue: str, *, vhost: str = "/", node: str | None = None) -> dict[str, int]:
    """Return ready, unacked and consumers of ``queue`` as RabbitMQ itself counts them."""
    import json as jsonlib

    result = rabbitmqctl(
        "list_queues",
        "-q",
        "-p",
        vhost,
        "name",
        "messages_ready",
        "messages_unacknowledged",
        "consumers",
        "--formatter",
        "json",
        node=node,
    )
    for row in jsonlib.loads(result.stdout or "[]"):
        if row["name"] == queue:
            return {
                "ready": row["messages_ready"],
                "unacked": row["messages_unacknowledged"],
                "consumers": row["consumers"],
            }
    return {"ready": 0, "unacked": 0, "consumers": 0}


def assert_settled(
    ids: list[Any], *, duplicates_allowed: int = 0, failed: set[str] | None = None
) -> dict[str, int]:
    """The invariant: every id ended COMPLETED (or FAILED when listed in ``failed``).

    Executions are counted in Effect, apart from MessageLog (the task's first argument is
    its Effect key): each completed task ran at least once, and at most
    ``duplicates_allowed`` extra runs happened overall. Returns runs per key.
    """
    from django.db.models import Count

    from carrot.models import MessageLog
    from tests.testapp.models import Effect

    failed = {str(i) for i in failed or ()}
    rows = {str(r.uuid): r for r in MessageLog.objects.filter(uuid__in=ids)}
    missing = [i for i in map(str, ids) if i not in rows]
    assert not missing, f"{len(missing)} published task(s) have no MessageLog: {missing[:5]}"
    wrong = [
        (u, r.status)
        for u, r in rows.items()
        if r.status != ("FAILED" if u in failed else "COMPLETED")
    ]
    assert not wrong, f"{len(wrong)} task(s) did not settle as expected: {wrong[:5]}"
    executions = dict(Effect.objects.values_list("key").annotate(n=Count("id")))
    runs = {str(r.task_args[0]): executions.get(str(r.task_args[0]), 0) for r in rows.values()}
    never = [
        key
        for key, row in ((str(r.task_args[0]), r) for r in rows.values())
        if row.status == "COMPLETED" and runs[key] == 0
    ]
    assert not never, f"completed but never executed: {never[:5]}"
    extra = sum(max(0, n - 1) for n in runs.values())
    assert extra <= duplicates_allowed, (
        f"{extra} duplicate execution(s), at most {duplicates_allowed} allowed"
    )
    return runs


class PostgresCluster:
    """A private PostgreSQL cluster (own data dir and port) to stop and start at will."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.data = base / "data"

    def _as_postgres(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=120)

    def init(self) -> PostgresCluster:
        if os.geteuid() == 0:
            subprocess.run(["chown", "postgres", str(self.base)], check=True)
        self._as_postgres("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.start()
        subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-c",
                "CREATE DATABASE carrot",
            ],
            check=True,
            capture_output=True,
        )
        return self

    def start(self) -> None:
        options = f"-k {self.base} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-w",
            "-l",
            str(self.base / "server.log"),
            "start",
        )

    def stop(self) -> None:
        """An outage: stop at once, as a crash would."""
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop")

    def env(self) -> dict[str, str]:
        """The environment for carrot subprocesses that use this cluster."""
        return {
            "CARROT_TEST_DB": "postgres",
            "CARROT_TEST_PG_PORT": str(self.port),
            "CARROT_TEST_DB_NAME": "carrot",
        }

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="carrot", autocommit=True
        ) as conn:
            return conn.execute(sql, params).fetchall()


def node_worker(worker_factory: Any, node: RabbitNode, *args: str, **env: str) -> WorkerProcess:
    """Start a worker on the private node and wait until it consumes."""
    return worker_factory(
        "--no-scheduler", *args, CARROT_TEST_BROKER=node.url, CARROT_TEST_PUBLISH_TIMEOUT="5", **env
    ).wait_ready()


def rss_kb(pid: int) -> int:
    """Return a process's resident memory in KiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")
