"""Settings for docs/screenshots.py: the example project on a throwaway database and vhost.

The script sets CARROT_DOCS_DB (a temporary SQLite file) and puts docs/, example_project/
and the repository root on PYTHONPATH before anything imports this module.
"""

import os

from example_project.settings import *  # noqa: F403
from example_project.settings import CARROT, DATABASES

DATABASES = {"default": {**DATABASES["default"], "NAME": os.environ["CARROT_DOCS_DB"]}}
CARROT = {
    **CARROT,
    "default_broker": os.environ.get(
        "CARROT_DOCS_BROKER", "amqp://guest:guest@127.0.0.1:5672/carrot-docs"
    ),
}
