"""The worker: ``manage.py carrot``.

- ``process``: the worker process (consumers, scheduler, outbox sweeper, heartbeat,
  signals); ``supervisor`` runs several; ``daemon`` runs one detached;
- ``consumer``: one consumed queue (the seed's ``Consumer``), its connection's I/O thread;
- ``intake``: from a delivery to its ack, in groups; ``gate`` admits deliveries;
  ``recorder`` writes claims and outcomes; ``attempts`` turns outcomes into records;
- ``pool`` and ``runner``: the task threads, time limits, ``logcapture``; ``retries``;
- ``heartbeats``: which workers are alive.
"""
