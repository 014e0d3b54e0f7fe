"""The unit tier: no broker and no database server (SQLite at most); ``make test-unit``.

Pure functions and single modules: cadences, settings parsing, the envelope, masking, the
lifecycle's SQL, the import graph. Nothing here may connect to RabbitMQ.
"""
