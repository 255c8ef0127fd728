"""Errors that lssat raises for problems a user can fix.

Every error here carries a one-line message that names the input at fault and the problem.
The command line turns them into that line on stderr and exit status 2, never a stack trace.
"""

from __future__ import annotations


class LssatError(Exception):
    """Base class: a problem with what the user asked for or gave us."""


class InputError(LssatError, ValueError):
    """A value, tensor or file content is not what the operation needs."""


class ConfigError(LssatError, ValueError):
    """A configuration value is missing, unknown or out of range."""


class DataError(LssatError, ValueError):
    """A dataset, index or record is malformed."""


class MissingDependencyError(LssatError, ImportError):
    """An optional extra is needed for this feature; the message says what to install."""
