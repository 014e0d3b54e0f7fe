"""What operators watch from outside: Prometheus metrics and OpenTelemetry traces.

Both are optional extras (``django-carrot[metrics]``, ``django-carrot[tracing]``). Without
them nothing here imports ``prometheus_client`` or ``opentelemetry``, and every hook the
rest of carrot calls is a check of one module global.

- ``metrics``: the worker's instruments, recorded only once a worker enabled them.
- ``exposition``: serving them over HTTP, from one process or summed over a supervisor's
  children.
- ``tracing``: PRODUCER spans where tasks are published, CONSUMER spans around runs, the
  W3C trace context in the message headers, and trace ids on log records.
"""
