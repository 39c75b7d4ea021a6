"""The failures the programs expect, phrased for a person. The CLI turns
each into one line and its exit status; the API into a problem document."""

from __future__ import annotations


class Failure(RuntimeError):
    """An operation that could not be done; the message says why. Exit status 1."""

    status = 1


class NotRunning(Failure):
    """A server (the database or the API) is not running or not reachable. Exit status 3."""

    status = 3
