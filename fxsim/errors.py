"""Typed errors for input that fxsim cannot honour.

Every error caused by what a user passed derives from :class:`FxsimError`; the command line maps these
(and only these) to exit code 2, so a bug inside fxsim shows as a traceback instead of passing for bad
input. The subclasses also derive from the built-in class users already catch (``ValueError``,
``TypeError``, ``FileExistsError``), so ``except ValueError`` keeps working.
"""
from __future__ import annotations

__all__ = ["FxsimError", "InvalidArgument", "InvalidType", "OutputExists", "BadFile", "RegisterOverflow"]


class FxsimError(Exception):
    """Base class of every error caused by the user's input (a value, a file, a spec, an option).

    ``argument``, where the raiser knows it, is the name of the argument at fault (so a spec file can point
    at the key that set it rather than at the constructor that checked it)."""

    def __init__(self, *args, argument: str | None = None):
        super().__init__(*args)
        self.argument = argument


class InvalidArgument(FxsimError, ValueError):
    """A value of the right type outside what is allowed; the message names the argument, the value and
    what is allowed."""


class InvalidType(FxsimError, TypeError):
    """A value of a type that the argument does not take."""


class OutputExists(FxsimError, FileExistsError):
    """An output location that already holds something fxsim may not replace."""


class BadFile(FxsimError, OSError):
    """An input file that is missing, unreadable, not a regular file, too large, or malformed."""


class RegisterOverflow(FxsimError, OverflowError):
    """A value left the range of a register whose overflow mode is ``error``: the configuration asked
    for an error rather than a wrapped or saturated value."""
