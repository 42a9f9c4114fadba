"""Exceptions that carry a user-facing, one-line message."""

from __future__ import annotations


class PtmevalError(Exception):
    """A user error: the message names the culprit and is printed without a traceback."""


class ConfigError(PtmevalError):
    """The configuration is invalid; raised before any job runs."""


class DataError(PtmevalError):
    """A dataset or cache file is unusable."""


class ModelSourceError(PtmevalError):
    """A model reference cannot be resolved to local files."""
