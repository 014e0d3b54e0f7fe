"""Serving the metrics over HTTP: from one worker process, or summed over a supervisor's.

A worker started with a metrics port serves prometheus_client's default registry (its
instruments, and the process's CPU, memory and file descriptors) on a thread of its own.
Under ``--processes N`` the supervisor owns the port: it gives its children a private
directory (``PROMETHEUS_MULTIPROC_DIR``), each child records into files there, and the
supervisor serves their sum; a child that exits has its live gauges dropped, while its
counters keep counting in the total.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from carrot.exceptions import CarrotConfigError
from carrot.observability import metrics

# Set by the supervisor in its children's environment: record, the supervisor serves.
CHILD_ENV = "CARROT_METRICS_CHILD"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _start_server(port: int, address: str, registry: Any = None) -> None:
    import prometheus_client as prom

    try:
        if registry is None:
            prom.start_http_server(port, addr=address)
        else:
            prom.start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        raise CarrotConfigError(
            f"Cannot serve metrics on {address}:{port}: {exc.strerror or exc}. Choose "
            "another port (--metrics-port or CARROT['metrics']['port'])."
        ) from None


def start_worker(port: int | None, address: str) -> bool:
    """Start recording in this worker process, and serve on ``port`` unless a supervisor
    does; return True if metrics are recorded."""
    if os.environ.get(CHILD_ENV):
        metrics.enable()
        return True
    if port is None:
        return False
    metrics.enable()
    _start_server(port, address)
    return True


class SummedMetrics:
    """The supervisor's side of ``--processes N --metrics-port P``."""

    def __init__(self, port: int, address: str) -> None:
        if not metrics.available():
            raise CarrotConfigError(
                f"Metrics need the prometheus-client package. {metrics.INSTALL_HINT}"
            )
        self.port = port
        self.address = address
        self.directory = tempfile.mkdtemp(prefix="carrot-metrics-")

    def child_environment(self) -> dict[str, str]:
        return {MULTIPROC_ENV: self.directory, CHILD_ENV: "1"}

    def serve(self) -> None:
        from prometheus_client import CollectorRegistry, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.directory)
        _start_server(self.port, self.address, registry)

    def child_exited(self, pid: int) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, self.directory)

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
