"""The small error hierarchy every layer raises and the CLI turns into one ``Error:`` line."""

from __future__ import annotations

import difflib


class PdplanError(Exception):
    """Base class: a problem the user can fix. Exit code 2 unless a subclass says otherwise."""

    exit_code = 2


class CatalogError(PdplanError):
    """A catalog entry is missing, unknown or malformed (names the file and the key)."""


class InvalidRequestError(PdplanError):
    """A request that cannot be answered as asked (bad flag value, bad spec, bad file)."""


class DoesNotFitError(PdplanError):
    """The model's weights (plus the runtime reserve) do not fit the GPUs of a deployment."""


class NoFeasiblePlanError(PdplanError):
    """No deployment in the search space meets the SLO. Exit code 3."""

    exit_code = 3

    def __init__(self, message: str, nearest: list | None = None):
        super().__init__(message)
        self.nearest = nearest or []


def did_you_mean(name: str, choices) -> str:
    """A ' (did you mean X?)' suffix naming the closest valid choice, or '' when none is close."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_name(kind: str, name: str, choices, flag: str | None = None) -> InvalidRequestError:
    """The error for a name that is not in a catalog or a list of choices."""
    where = f"{flag}: " if flag else ""
    valid = ", ".join(sorted(str(c) for c in choices))
    return InvalidRequestError(
        f"{where}unknown {kind} {name!r}{did_you_mean(name, choices)}; valid: {valid}"
    )
