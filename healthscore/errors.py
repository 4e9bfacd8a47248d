"""Errors a user can act on.

Anything raised as :class:`HealthscoreError` is shown by the CLI as a one-paragraph
message and a non-zero exit, never as a traceback.
"""


class HealthscoreError(Exception):
    """A problem with the user's input, config or environment, explained in words."""

    exit_code = 2


class DataContractError(HealthscoreError):
    """The data folder breaks the input data contract."""
