"""Errors that mean "bad input", reported to the user without a traceback."""
from __future__ import annotations


class DataMissingError(FileNotFoundError):
    """A data set is not where we looked; the message says where and how to get it."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types the CLI reports as a one-paragraph message and exit code 2."""
    from clbench.backbones import BackboneWeightsError
    from clbench.protocol import IncompatibleError
    from clbench.records import RecordError
    from clbench.registry import UnknownNameError

    return (DataMissingError, IncompatibleError, UnknownNameError, BackboneWeightsError, RecordError, ValueError)
