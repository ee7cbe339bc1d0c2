"""Exceptions raised for bad user input.

Every error a user can cause (a wrong knob count, an unreadable image, a missing weight file)
is a :class:`TunableconvError`. The command line prints its message as one line and exits
with status 2; library users can catch it (or the matching builtin, e.g. ``ValueError``).
"""

from __future__ import annotations


class TunableconvError(Exception):
    """Base class of every user-facing error in tunableconv."""


class InvalidParamsError(TunableconvError, ValueError):
    """The interactive parameters p have a wrong shape, a value outside [0, 1] or a NaN."""


class InputError(TunableconvError, ValueError):
    """An input (image, file, option value) cannot be used."""


class MissingWeightsError(TunableconvError, FileNotFoundError):
    """Pretrained weights that are needed were not found on this machine."""


class InputWarning(UserWarning):
    """An input is used, but not quite as given (the first frame of an animated image, ...).
    The command line prints it as one ``warning:`` line on stderr."""
