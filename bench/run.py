#!/usr/bin/env python
"""``make bench``: raw pika and django-carrot on the same broker, in one run.

Each workload is repeated (``--repeat``, default 3) and the median is reported with its
ratio to raw pika measured in the same run. Benchmarks are not tests: nothing here
asserts; the table says which targets are met. Needs RabbitMQ on 127.0.0.1:5672 and, for
the PostgreSQL variant, PostgreSQL on 127.0.0.1:5432.
"""

# ruff: noqa: S608 (the benchmarks build SQL from constants and integers, never from input)
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RAW_QUEUE = "raw-bench"


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=False, capture_output=True, timeout=60)


def setup(db: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    os.environ["CARROT_BENCH_DB"] = db
    import django

    django.setup()
    from django.core.management import call_command

    if db == "postgres":
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute("DROP DATABASE IF EXISTS carrot_bench")
            conn.execute("CREATE DATABASE carrot_bench")
    else:
        from django.conf import settings
        from django.db import connections

        connections.close_all()
        for suffix in ("", "-wal", "-shm"):
            Path(str(settings.DATABASES["default"]["NAME"]) + suffix).unlink(missing_ok=True)
    call_command("migrate", verbosity=0)


def reset_broker() -> None:
    from django.conf import settings

    from carrot.broker.relays import relays

    relays.stop_all()
    rabbitmqctl("delete_vhost", settings.VHOST)
    rabbitmqctl("add_vhost", settings.VHOST)
    rabbitmqctl("set_permissions", "-p", settings.VHOST, "guest", ".*", ".*", ".*")


def reset_db() -> None:
    from carrot.models import MessageLog

    MessageLog.objects.all().delete()


def broker_url() -> str:
    from django.conf import settings

    return str(settings.CARROT["default_broker"])


def raw_channel(confirm: bool):  # noqa: ANN201
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(broker_url()))
    channel = connection.channel()
    channel.queue_declare(RAW_QUEUE, durable=True)
    if confirm:
        channel.confirm_delivery()
    return connection, channel


def raw_publish(n: int, *, confirm: bool) -> float:
    import pika

    connection, channel = raw_channel(confirm)
    channel.queue_purge(RAW_QUEUE)
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    body = b'{"args": [0], "kwargs": {}}'
    started = time.perf_counter()
    for _ in range(n):
        channel.basic_publish("", RAW_QUEUE, body, props)
    channel.queue_declare(RAW_QUEUE, passive=True)  # a round trip: everything was sent
    elapsed = time.perf_counter() - started
    connection.close()
    return n / elapsed


def _consume_with_threads(
    connection: Any,
    channel: Any,
    n: int,
    *,
    threads: int,
    prefetch: int,
    handle: Callable[[bytes], None],
    finish: Callable[[], None] = lambda: None,
) -> float:
    """Consume ``n`` messages from RAW_QUEUE shaped like a worker (an I/O thread, task
    threads that call ``handle(body)`` and ack thread-safely); return messages/s.
    ``finish`` runs on each task thread before it ends."""
    import queue as queuelib
    from functools import partial

    channel.basic_qos(prefetch_count=prefetch)
    work: queuelib.SimpleQueue = queuelib.SimpleQueue()
    done = 0
    lock = threading.Lock()

    def run() -> None:
        nonlocal done
        while True:
            item = work.get()
            if item is None:
                finish()
                return
            tag, body = item
            handle(body)
            connection.add_callback_threadsafe(partial(channel.basic_ack, tag))
            with lock:
                done += 1
                if done >= n:
                    connection.add_callback_threadsafe(channel.stop_consuming)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for thread in workers:
        thread.start()
    started = time.perf_counter()
    channel.basic_consume(
        RAW_QUEUE, lambda ch, method, props, body: work.put((method.delivery_tag, body))
    )
    channel.start_consuming()
    elapsed = time.perf_counter() - started
    for _ in workers:
        work.put(None)
    for thread in workers:
        thread.join()
    connection.close()
    return n / elapsed


def raw_drain(n: int, *, threads: int = 2, prefetch: int = 100) -> float:
    """Raw pika shaped like a worker: an I/O thread, task threads, thread-safe acks."""
    raw_publish(n, confirm=False)
    connection, channel = raw_channel(False)
    return _consume_with_threads(
        connection, channel, n, threads=threads, prefetch=prefetch, handle=lambda body: None
    )


# Each latency sample starts after this much idle time, the same for raw pika, naive
# tracking and carrot: "idle latency" is a publish into a quiet system, and a loop that
# publishes the moment the previous message arrived measures a warmer path.
IDLE = 0.005


def raw_latency(samples: int) -> list[float]:
    import pika

    received: list[float] = []
    ready = threading.Event()
    got = threading.Event()

    def consume() -> None:
        connection, channel = raw_channel(False)
        channel.queue_purge(RAW_QUEUE)

        def on_message(ch, method, properties, _body):  # noqa: ANN001
            received.append(time.time() - properties.timestamp / 1e6)
            ch.basic_ack(method.delivery_tag)
            got.set()
            if len(received) >= samples:
                ch.stop_consuming()

        channel.basic_consume(RAW_QUEUE, on_message)
        ready.set()
        channel.start_consuming()
        connection.close()

    thread = threading.Thread(target=consume)
    thread.start()
    ready.wait()
    connection, channel = raw_channel(True)
    for _ in range(samples):
        got.clear()
        time.sleep(IDLE)
        props = pika.BasicProperties(delivery_mode=2, timestamp=int(time.time() * 1e6))
        channel.basic_publish("", RAW_QUEUE, b"{}", props)
        got.wait(10)
    thread.join()
    connection.close()
    return received


# ---------------------------------------------------------------- naive tracking
# What a developer writes by hand to track tasks in the database: INSERT a row, publish;
# in the consumer UPDATE it to started, run, UPDATE it to done, ack. Same table as carrot
# (MessageLog), raw pika shaped like raw_drain (2 task threads, prefetch 100).


def _naive_rows(n: int) -> list[int]:
    from django.utils import timezone

    from carrot.models import MessageLog

    reset_db()
    now = timezone.now()
    logs = MessageLog.objects.bulk_create(
        MessageLog(task="bench.tasks.noop", task_args=[i], publish_time=now) for i in range(n)
    )
    return [log.pk for log in logs]


def _naive_run(pk: int) -> None:
    from django.utils import timezone

    from carrot.models import MessageLog

    rows = MessageLog.objects.filter(pk=pk)
    rows.update(status="IN_PROGRESS", start_time=timezone.now(), attempts=1)
    rows.update(status="COMPLETED", completion_time=timezone.now())


def naive_drain(n: int, *, threads: int = 2, prefetch: int = 100) -> float:
    """INSERT + 2 UPDATEs per task, by hand: the rows and messages exist beforehand."""
    import pika
    from django.db import connection as db

    ids = _naive_rows(n)
    connection, channel = raw_channel(False)
    channel.queue_purge(RAW_QUEUE)
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    for pk in ids:
        channel.basic_publish("", RAW_QUEUE, json.dumps({"id": pk}).encode(), props)
    return _consume_with_threads(
        connection,
        channel,
        n,
        threads=threads,
        prefetch=prefetch,
        handle=lambda body: _naive_run(json.loads(body)["id"]),
        finish=lambda: db.close(),  # this thread's connection, looked up in it
    )


def naive_latency(samples: int) -> list[float]:
    """From before the INSERT to the consumer's "started" UPDATE, by hand."""
    import pika
    from django.db import connection as db
    from django.utils import timezone

    from carrot.models import MessageLog

    reset_db()
    measured: list[float] = []
    ready, got = threading.Event(), threading.Event()

    def consume() -> None:
        connection, channel = raw_channel(False)
        channel.queue_purge(RAW_QUEUE)
        seen = 0

        def on_message(ch, method, properties, body):  # noqa: ANN001
            nonlocal seen
            pk = json.loads(body)["id"]
            MessageLog.objects.filter(pk=pk).update(status="IN_PROGRESS", start_time=timezone.now())
            ch.basic_ack(method.delivery_tag)
            seen += 1
            got.set()
            if seen >= samples:
                ch.stop_consuming()

        channel.basic_consume(RAW_QUEUE, on_message)
        ready.set()
        channel.start_consuming()
        connection.close()
        db.close()

    thread = threading.Thread(target=consume)
    thread.start()
    ready.wait()
    connection, channel = raw_channel(True)
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    for i in range(samples):
        got.clear()
        time.sleep(IDLE)
        started = time.time()
        log = MessageLog.objects.create(
            task="bench.tasks.noop", task_args=[i], publish_time=timezone.now()
        )
        channel.basic_publish("", RAW_QUEUE, json.dumps({"id": log.pk}).encode(), props)
        got.wait(10)
        start = MessageLog.objects.filter(pk=log.pk).values_list("start_time", flat=True)[0]
        measured.append(start.timestamp() - started)
    thread.join()
    connection.close()
    return measured


def carrot_enqueue(n: int) -> float:
    """Tasks/s of one delay() at a time, until RabbitMQ confirmed every message."""
    from bench.tasks import noop
    from carrot.models import handover as outbox

    noop.delay(-1)  # a warm connection, as in a running web process
    outbox.flush(120)  # start idle: the previous repeat's messages are all published
    started = time.perf_counter()
    for i in range(n):
        noop.delay(i)
    outbox.flush(120)
    return n / (time.perf_counter() - started)


def carrot_enqueue_many(n: int) -> tuple[float, float]:
    """Return tasks/s until delay_many() returned (rows and outbox entries committed: each
    task is then guaranteed) and until RabbitMQ confirmed every message."""
    from bench.tasks import noop
    from carrot.models import handover as outbox

    outbox.flush(120)  # start idle: the previous repeat's messages are all published
    started = time.perf_counter()
    noop.delay_many([((i,), {}) for i in range(n)])
    returned = time.perf_counter()
    outbox.flush(120)
    confirmed = time.perf_counter()
    return n / (returned - started), n / (confirmed - started)


class Worker:
    def __init__(
        self,
        threads: int = 2,
        processes: int = 1,
        *,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        env = {
            **os.environ,
            "CARROT_BENCH_THREADS": str(threads),
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        args = ("--no-scheduler", "--loglevel", "WARNING", *args)
        if processes > 1:
            args += ("--processes", str(processes))
        # The worker's log goes to a file: an unread pipe would fill up and block it.
        self.log_path = Path(
            os.environ.get("CARROT_BENCH_WORKER_LOG", "/tmp/carrot-bench-worker.log")
        )
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", "carrot", *args],
            cwd=ROOT,
            env=env,
            stderr=self._log,
            start_new_session=True,
        )

    def pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-g", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def rss_mb(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except FileNotFoundError:
                continue
        return total / 1024

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the worker's processes used so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / ticks

    def stop(self) -> None:
        import signal

        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step timed out")
        time.sleep(interval)


def carrot_drain(
    n: int, *, processes: int = 1, prefetch: int | None = None, **worker: Any
) -> tuple[float, float, float, float]:
    """Return (tasks/s, RSS after 1k, RSS after n, worker CPU µs per task after the first
    1k) for a worker draining n queued tasks."""
    os.environ["CARROT_BENCH_PREFETCH"] = str(prefetch or "")
    from django.db.models import Max, Min

    from carrot.models import MessageLog

    reset_db()
    carrot_enqueue_many(n)
    threads = 2 if processes == 1 else 1
    worker = Worker(threads=threads, processes=processes, **worker)
    try:
        done = MessageLog.objects.filter(status=MessageLog.COMPLETED)
        wait_for(lambda: done.count() >= min(1000, n), 300)
        rss_1k, cpu_1k, done_1k = worker.rss_mb(), worker.cpu_seconds(), done.count()
        wait_for(lambda: done.count() >= n, 600, 0.2)
        rss_end, cpu_end = worker.rss_mb(), worker.cpu_seconds()
    finally:
        worker.stop()
    span = done.aggregate(first=Min("start_time"), last=Max("completion_time"))
    elapsed = (span["last"] - span["first"]).total_seconds()
    cpu_per_task = (cpu_end - cpu_1k) / max(n - done_1k, 1) * 1e6
    return n / elapsed, rss_1k, rss_end, cpu_per_task


def carrot_latency(samples: int) -> list[float]:
    from bench.tasks import noop
    from carrot.models import MessageLog

    reset_db()
    worker = Worker(threads=2)
    out = []
    try:
        noop.delay(-1)
        wait_for(lambda: MessageLog.objects.filter(status="COMPLETED").exists(), 60)
        for i in range(samples):
            time.sleep(IDLE)
            started = time.time()
            log = noop.delay(i)
            # Measured from the worker's start_time, so how we wait does not change the
            # value; but polling at once would hold this process's GIL (building queries)
            # while its relay thread wants it to publish. Raw pika's publisher thread waits
            # on an Event here, so it does not compete either.
            time.sleep(0.003)
            row = MessageLog.objects.filter(pk=log.pk)
            wait_for(lambda row=row: row.filter(start_time__isnull=False).exists(), 10, 0.001)
            out.append(row.values_list("start_time", flat=True)[0].timestamp() - started)
    finally:
        worker.stop()
    return out


MONITOR_PAGES = {
    "list": "/carrot/tasks/completed/",
    "overview": "/carrot/",
    "statistics 7 d": "/carrot/statistics/?window=7d",
    "statistics 1 h": "/carrot/statistics/?window=1h",
}


def _fill_history(rows: int) -> None:
    """Insert ``rows`` finished tasks spread over the last 7 days: 8 task names, one in 20
    failed, runtimes from 0 to 1 s."""
    from django.db import connection

    columns = (
        "uuid, status, task, queue, exchange, routing_key, priority, task_args, "
        "task_kwargs, output, exception, traceback, log, attempts, interruptions, "
        "worker, publish_time, start_time, completion_time, failure_time, attempt_history, "
        "exception_type, backend, search_text"
    )
    if connection.vendor == "postgresql":
        ended = "(now() - (i % 604800) * interval '1 second')"
        started = f"({ended} - (i % 1000) * interval '1 millisecond')"
        source, uuid = f"generate_series(1, {int(rows)}) AS i", "gen_random_uuid()"
    else:
        ended = "strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (i % 604800) || ' seconds')"
        started = (
            "strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || ((i % 604800) + (i % 1000) / 1000.0)"
            " || ' seconds')"
        )
        source, uuid = "n", "lower(hex(randomblob(16)))"
    failed = "i % 20 = 0"
    # No parameters: the SQL holds "%" (modulo, strftime), and every value is a constant.
    select = (
        f"SELECT {uuid}, CASE WHEN {failed} THEN 'FAILED' ELSE 'COMPLETED' END, "
        "'bench.tasks.t' || (i % 8), 'default', '', 'default', 0, '[1]', '{}', 'null', "
        "CASE WHEN i % 20 = 0 THEN 'ValueError: bench' ELSE '' END, '', '[]', 1, 0, 'w', "
        f"{started}, {started}, CASE WHEN {failed} THEN NULL ELSE {ended} END, "
        f"CASE WHEN {failed} THEN {ended} ELSE NULL END, '[]', '', '', '[1] {{}}' FROM {source}"
    )
    prefix = (
        ""
        if connection.vendor == "postgresql"
        else f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows:d}) "
    )
    with connection.cursor() as cursor:
        cursor.execute(f"{prefix}INSERT INTO carrot_messagelog ({columns}) {select}")
        if connection.vendor == "postgresql":
            # What autovacuum does soon after a bulk load; without it the planner still
            # believes the table is empty and scans whole indexes.
            cursor.execute("VACUUM ANALYZE carrot_messagelog")


def monitor_pages_ms(rows: int) -> dict[str, float]:
    """Return the median time of each monitor page (ms) with ``rows`` tasks in the table,
    and of the statistics' first roll-up over all of them ("first roll-up")."""
    from django.contrib.auth.models import User
    from django.test import Client

    from carrot.models import MessageLog, RollupMark, TaskRollup
    from carrot.models.statistics import roll_up

    reset_db()
    TaskRollup.objects.all().delete()
    RollupMark.objects.all().delete()
    _fill_history(rows)
    assert MessageLog.objects.count() == rows
    started = time.perf_counter()
    roll_up()  # a worker does this every minute; the first time sums the whole history
    out = {"first roll-up": (time.perf_counter() - started) * 1000}
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", "b@example.com", "pw"
    )
    client = Client()
    client.force_login(user)
    for name, url in MONITOR_PAGES.items():
        timings = []
        for _ in range(15):
            started = time.perf_counter()
            response = client.get(url)
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200, (url, response.status_code)
        out[name] = statistics.median(timings[3:]) * 1000
    return out


def median(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


Add = Callable[[str, str, str, "float | None", str, "bool | None"], None]


def db_rows(db: str, n: int, repeat: int, raw: dict[str, float], add: Add) -> None:
    """Drain and latency on ``db``: naive tracking and carrot, each against raw pika."""
    reset_broker()
    raw_rate = raw["drain"]
    naive = median(lambda: naive_drain(n), repeat)
    add(
        f"drain {n:,}, naive tracking, {db}",
        f"{raw_rate:,.0f}/s",
        f"{naive:,.0f}/s",
        naive / raw_rate,
        "(reported)",
        None,
    )
    variants = [
        ("2 threads, library defaults", 1, None, 0.35 if db == "sqlite" else 0.30),
        ("2 threads, prefetch 100", 1, 100, 0.5),
        ("2 processes x 1 thread, prefetch 100", 2, 100, 0.5),
    ]
    for label, processes, prefetch, target in variants:
        rate = median(
            lambda p=processes, f=prefetch: carrot_drain(n, processes=p, prefetch=f)[0], repeat
        )
        add(
            f"drain {n:,}, carrot {label}, {db}",
            f"{raw_rate:,.0f}/s",
            f"{rate:,.0f}/s",
            rate / raw_rate,
            f">= {target}x raw",
            rate / raw_rate >= target,
        )
    samples = 200
    naive_lat = naive_latency(samples)
    carrot_lat = carrot_latency(samples)
    for name, p, target in (("p50", 50, 2.0), ("p99", 99, 3.0)):
        raw_ms = raw[name] * 1000
        naive_ms = percentile(naive_lat, p) * 1000
        ours_ms = percentile(carrot_lat, p) * 1000
        add(
            f"idle latency delay() -> task start, {name}, naive tracking, {db}",
            f"{raw_ms:.2f} ms",
            f"{naive_ms:.2f} ms",
            naive_ms / raw_ms,
            "(reported)",
            None,
        )
        add(
            f"idle latency delay() -> task start, {name}, carrot, {db}",
            f"{raw_ms:.2f} ms",
            f"{ours_ms:.2f} ms",
            ours_ms / raw_ms,
            f"<= {target}x raw",
            ours_ms <= target * raw_ms,
        )


# Installed in a worker's sitecustomize: prometheus_client and opentelemetry cannot be
# imported, as if django-carrot's extras were not installed.
WITHOUT_EXTRAS = """
import importlib.abc, sys


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("prometheus_client", "opentelemetry"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Blocker())
"""


def observability_overhead(db: str, n: int, repeat: int, add: Add) -> None:
    """Drain and enqueue without the extras, with them installed but not configured, and
    with metrics served; the variants take turns in each repeat, so drift hits all."""
    import socket
    import tempfile

    from carrot.observability import tracing

    blocker = Path(tempfile.mkdtemp(prefix="carrot-bench-"))
    (blocker / "sitecustomize.py").write_text(WITHOUT_EXTRAS)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    variants: dict[str, dict[str, Any]] = {
        "without the extras": {"env": {"PYTHONPATH": f"{blocker}{os.pathsep}{ROOT}"}},
        "extras installed, not configured": {},
        "metrics served (--metrics-port)": {"args": ("--metrics-port", str(port))},
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for turn in range(repeat):
        # Each turn starts with another variant, so no variant always runs first or last.
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            rate, _, _, cpu_us = carrot_drain(n, **variants[name])
            rates[name].append(rate)
            cpu[name].append(cpu_us)
            print(f"    ({name}: {rate:,.0f}/s, {cpu_us:,.0f} µs CPU per task)", flush=True)
    base = statistics.median(rates["without the extras"])
    base_cpu = statistics.median(cpu["without the extras"])
    for name in variants:
        rate, cpu_us = statistics.median(rates[name]), statistics.median(cpu[name])
        first = name == "without the extras"
        add(
            f"drain {n:,}, library defaults, {name}, {db}",
            "",
            f"{rate:,.0f}/s",
            rate / base,
            "(the base)" if first else ">= 0.95x without the extras",
            None if first else rate / base >= 0.95,
        )
        # CPU per task varies less between runs than the rate: it shows the cost itself.
        add(
            f"  worker CPU per task, {name}, {db}",
            "",
            f"{cpu_us:,.0f} µs",
            cpu_us / base_cpu,
            "(the base)" if first else "<= 1.05x without the extras",
            None if first else cpu_us / base_cpu <= 1.05,
        )
    # The caller's side: one delay() at a time, tracing code paths off (as without the
    # extras) and on (opentelemetry-api installed, no SDK configured).
    enqueue: dict[bool, list[float]] = {False: [], True: []}
    available = tracing.AVAILABLE
    try:
        for _ in range(repeat):
            for on in (False, True):
                tracing.AVAILABLE = on and available
                enqueue[on].append(carrot_enqueue(2000))
    finally:
        tracing.AVAILABLE = available
    off, on = statistics.median(enqueue[False]), statistics.median(enqueue[True])
    add(
        "enqueue, one delay() at a time, opentelemetry-api installed vs not",
        "",
        f"{on:,.0f}/s vs {off:,.0f}/s",
        on / off,
        ">= 0.95x",
        on / off >= 0.95,
    )


ROW_PREFIX = "BENCH-ROW "


def rows_in_subprocess(db: str, n: int, repeat: int, raw: dict[str, float], add: Add) -> None:
    """Run ``db_rows`` for ``db`` in a child process and add the rows it reports."""
    from carrot.broker.relays import relays

    relays.stop_all()  # the child recreates the vhost; our relay would only log its loss
    cmd = [sys.executable, __file__, "--db-only", db, "--repeat", str(repeat)]
    cmd += ["--n-drain", str(n), "--raw", json.dumps(raw)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode:
        sys.stderr.write(out.stdout + out.stderr)
        raise SystemExit(f"the {db} benchmarks failed (exit {out.returncode})")
    for line in out.stdout.splitlines():
        if line.startswith(ROW_PREFIX):
            add(*json.loads(line[len(ROW_PREFIX) :]))


def db_only(db: str, n: int, repeat: int, raw: dict[str, float]) -> None:
    def report(*row: Any) -> None:
        print(ROW_PREFIX + json.dumps(row), flush=True)

    setup(db)
    db_rows(db, n, repeat, raw, report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller workloads, one repeat")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--skip-monitor", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-observability", action="store_true")
    parser.add_argument(
        "--only-observability",
        action="store_true",
        help="only the metrics and tracing overhead (on the first --db)",
    )
    # Internal: the benchmarks of a second database, in its own process.
    parser.add_argument("--db-only", choices=("sqlite", "postgres"), help=argparse.SUPPRESS)
    parser.add_argument("--n-drain", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--raw", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.db_only:
        db_only(args.db_only, args.n_drain, args.repeat, json.loads(args.raw))
        return
    repeat = 1 if args.quick else args.repeat
    scale = 0.2 if args.quick else 1.0
    n_single = int(2000 * scale)
    n_bulk = int(10_000 * scale)
    n_drain = int(10_000 * scale)
    n_memory = int(100_000 * scale)

    rows: list[tuple[str, str, str, str, str, bool | None]] = []

    def add(
        name: str, raw: str, ours: str, ratio: float | None, target: str, ok: bool | None
    ) -> None:
        rows.append((name, raw, ours, f"{ratio:.2f}x" if ratio is not None else "", target, ok))
        against = f" (raw {raw})" if raw else ""
        print(f"  {name}: {ours}{against} {target}", flush=True)

    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    setup(dbs[0])
    reset_broker()
    print(
        f"Benchmarks on {platform.node()}: {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, repeat {repeat}",
        flush=True,
    )

    if args.only_observability:
        observability_overhead(dbs[0], n_drain, repeat, add)
        print_table(rows)
        return

    raw_confirm = median(lambda: raw_publish(n_single, confirm=True), repeat)
    ours = median(lambda: carrot_enqueue(n_single), repeat)
    add(
        "enqueue, one delay() at a time, until all confirmed",
        f"{raw_confirm:,.0f}/s",
        f"{ours:,.0f}/s",
        ours / raw_confirm,
        ">= 1.2x raw publish with a confirm each",
        ours / raw_confirm >= 1.2,
    )

    raw_plain = median(lambda: raw_publish(n_bulk, confirm=False), repeat)
    runs = [carrot_enqueue_many(n_bulk) for _ in range(repeat)]
    ours = statistics.median(r[0] for r in runs)
    add(
        f"bulk enqueue, delay_many({n_bulk:,}) returns",
        f"{raw_plain:,.0f}/s",
        f"{ours:,.0f}/s",
        ours / raw_plain,
        ">= 0.5x raw publish without confirms",
        ours / raw_plain >= 0.5,
    )
    ours = statistics.median(r[1] for r in runs)
    add(
        f"bulk enqueue, delay_many({n_bulk:,}) until all confirmed",
        f"{raw_plain:,.0f}/s",
        f"{ours:,.0f}/s",
        ours / raw_plain,
        "(reported)",
        None,
    )

    raw_lat = raw_latency(200)
    raw = {
        "drain": median(lambda: raw_drain(n_drain), repeat),
        "p50": percentile(raw_lat, 50),
        "p99": percentile(raw_lat, 99),
    }
    for index, db in enumerate(dbs):
        if index:
            # Django's settings are fixed once loaded: another database needs its own process.
            rows_in_subprocess(db, n_drain, repeat, raw, add)
        else:
            db_rows(db, n_drain, repeat, raw, add)
    if not args.skip_observability:
        observability_overhead(dbs[0], n_drain, repeat, add)
    if not args.skip_memory:
        _, rss_1k, rss_end, _ = carrot_drain(n_memory)
        add(
            f"worker RSS after 1k vs {n_memory // 1000}k tasks, library defaults, {dbs[0]}",
            "",
            f"{rss_1k:.0f} -> {rss_end:.0f} MB",
            None,
            "grows < 20 MB",
            rss_end - rss_1k < 20,
        )
    if not args.skip_monitor:
        small = monitor_pages_ms(1000)
        big_rows = 100_000 if args.quick else 1_000_000
        big = monitor_pages_ms(big_rows)
        for page, limit in (
            ("list", 2),
            ("overview", 3),
            ("statistics 7 d", 3),
            ("statistics 1 h", 3),
        ):
            add(
                f"monitor {page} page, 1k vs {big_rows:,} rows, {dbs[0]}",
                f"{small[page]:.1f} ms",
                f"{big[page]:.1f} ms",
                big[page] / small[page],
                f"grows < {limit}x",
                big[page] / small[page] < limit,
            )
        add(
            f"statistics: first roll-up of {big_rows:,} rows (once; then each minute)",
            "",
            f"{big['first roll-up'] / 1000:.1f} s",
            None,
            "(reported)",
            None,
        )

    print_table(rows)


def print_table(rows: list[tuple[str, str, str, str, str, bool | None]]) -> None:
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'workload':<{width}}  {'raw pika':>12}  {'measured':>16}  {'ratio':>7}  target")
    for name, raw_text, ours_text, ratio, target, ok in rows:
        mark = "" if ok is None else ("  ok" if ok else "  MISSED")
        print(f"{name:<{width}}  {raw_text:>12}  {ours_text:>16}  {ratio:>7}  {target}{mark}")


if __name__ == "__main__":
    main()
