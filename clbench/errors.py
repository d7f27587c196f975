"""Errors that mean "bad input": the CLI reports them as one paragraph, exit code 2."""
from __future__ import annotations

from clbench.registry import UnknownNameError


class UserError(Exception):
    """Base of clbench's bad-input errors (each also derives from the builtin error it is,
    e.g. ``ValueError``), reported without a traceback."""


class DataMissingError(UserError, FileNotFoundError):
    """A data set is not where we looked; the message says where and how to get it."""


class DiskFullError(UserError, OSError):
    """A record or checkpoint that could not be written because the disk (or quota) is full:
    the run stops as ``interrupted``, resumable (``resume=auto``) once there is space."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types the CLI reports as a one-paragraph message and exit code 2."""
    return (UserError, UnknownNameError, ValueError)
