"""The wire contract as JSON Schema (2020-12): one file per public topic, shipped with the package.

These files are the source of truth for the payloads; the README's tables summarise them and
``tests/test_schemas.py`` checks that both name the same fields, that the worker accepts what
they accept and rejects what they reject, and that everything the worker writes validates.

>>> names()
['alerts', 'deadletter', 'labels', 'predictions', 'retrain']
>>> load("alerts")["$id"] == uri("alerts")
True
"""
from __future__ import annotations

import functools
import json
from importlib import resources

NAMES = ("alerts", "deadletter", "labels", "predictions", "retrain")


def names() -> list[str]:
    """The schemas there are, one per topic (named after the topic's default name without ``driftline.``)."""
    return sorted(NAMES)


def text(name: str) -> str:
    """The schema file as shipped (``driftline schema NAME`` prints this)."""
    if name not in NAMES:
        raise KeyError(f"no schema {name!r}; there are: {', '.join(names())}")
    return resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")


@functools.cache
def _loaded(name: str) -> str:
    return text(name)


def load(name: str) -> dict:
    """The schema as a dict (a fresh copy: callers may change it)."""
    return json.loads(_loaded(name))


def uri(name: str) -> str:
    """The schema's ``$id``: a URN, since no server hosts the files (``driftline schema NAME`` prints them).
    CloudEvents carry it as ``dataschema``."""
    return f"urn:driftline:schema:{name}:1"
