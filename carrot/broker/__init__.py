"""RabbitMQ through pika: the only package that imports pika.

Everything above it sees carrot's own types (``Outgoing``, ``Delivery``, ``Settle``) and
errors (``BrokerUnavailable``, ``PublishError``, ``QueueMismatch``); pika exceptions are
translated here. A pika connection belongs to one thread: each relay (the one publisher)
and each consumer owns its connection, and other threads reach them through
``add_callback_threadsafe``.

- ``connection``: parameters, connecting, errors described in plain words;
- ``topology``: the queues carrot declares and where each message goes;
- ``outgoing``, ``relay``, ``relays``: publishing with pipelined confirms;
- ``consuming``: one consumer connection per queue;
- ``maintenance``: queue depths and purges for operators.
"""
