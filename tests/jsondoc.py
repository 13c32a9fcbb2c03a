"""Reading the CLI's --json/--format documents in tests: every command prints one envelope
(docs/cli.md, "Documents"); these check it and return what is inside."""

from __future__ import annotations

import json

ENVELOPE = ("pdplan_version", "command", "schema_version")


def envelope_of(text: str) -> dict:
    """The whole document, after checking its envelope keys."""
    doc = json.loads(text)
    assert isinstance(doc, dict) and all(k in doc for k in ENVELOPE), doc
    assert "result" in doc or "error" in doc, doc
    return doc


def result_of(text: str) -> dict:
    """The command's result (``doc["result"]``) of a successful run."""
    doc = envelope_of(text)
    assert "error" not in doc, doc["error"]
    return doc["result"]


def error_of(text: str) -> dict:
    """The ``error`` object of a failed run's document."""
    return envelope_of(text)["error"]
