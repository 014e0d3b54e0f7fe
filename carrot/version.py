"""The version of django-carrot (also in pyproject.toml)."""

__version__ = "2.0.0.dev0"
