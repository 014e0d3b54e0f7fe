"""Scheduling: when schedules are due (``cadence``, pure), the ``@periodic`` declarations
(``declaration``, ``sync``), the loop that publishes ticks (``scheduler``) and what people
change (``edits``).

Import the submodules; this package imports nothing, so ``carrot.tasks`` can use the pure
modules while Django is still loading apps.
"""
