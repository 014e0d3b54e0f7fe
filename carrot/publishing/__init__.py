"""Publishing task calls: validate and encode them (``calls``), write their rows with
outbox entries and hand them over (``enqueue``), and publish what stayed behind
(``sweeper``). The path from a committed row to RabbitMQ is ``carrot.models.handover``.
"""
