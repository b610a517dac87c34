"""Hypothesis strategies read off a JSON Schema: payloads it accepts and payloads it rejects.

hypothesis-jsonschema would do the first half, but its 0.23 release does not run with the
Hypothesis this project pins (an internal API it uses is gone), so this covers the keywords
``schemas/`` uses and fails loudly on any other: a new keyword in a schema means a line here.
"""
from __future__ import annotations

import datetime as _dt

import jsonschema
from hypothesis import strategies as st

KNOWN = {"$ref", "oneOf", "allOf", "type", "enum", "const", "properties", "required", "additionalProperties",
         "maxProperties", "propertyNames", "items", "minItems", "minLength", "maxLength", "pattern", "format",
         "minimum", "maximum", "description", "title", "$defs", "$id", "$schema"}
DOUBLE_MAX = 1.7976931348623157e308
# orjson writes integers of at most 64 bits; producers' JSON numbers are usually doubles anyway
INTEGERS = st.integers(-(2 ** 53), 2 ** 53)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
KEYS = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)
JSON = st.recursive(st.none() | st.booleans() | INTEGERS | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
                    max_leaves=6)


class SchemaStrategies:
    """``valid(node)``: instances of a schema node; ``invalid_object(node)``: an object that breaks one rule."""

    def __init__(self, schema: dict):
        self.root = schema
        self.defs = schema.get("$defs", {})

    def resolve(self, node: dict) -> dict:
        while "$ref" in node:
            extra = {k: v for k, v in node.items() if k not in ("$ref", "description")}
            assert not extra, f"$ref with siblings {extra}"
            node = self.defs[node["$ref"].rsplit("/", 1)[1]]
        return node

    def merged(self, node: dict) -> dict:
        """An allOf of simple parts as one node (schemas/ uses it for 'a finite number, at least 0')."""
        node = self.resolve(node)
        if "allOf" not in node:
            return node
        out = {k: v for k, v in node.items() if k != "allOf"}
        for part in node["allOf"]:
            out.update(self.merged(part))
        return out

    def is_valid(self, node: dict, value) -> bool:
        return jsonschema.Draft202012Validator({**node, "$defs": self.defs}).is_valid(value)

    def valid(self, node: dict) -> st.SearchStrategy:
        node = self.merged(node)
        unknown = set(node) - KNOWN
        assert not unknown, f"strategies.py does not know {unknown}"
        if "oneOf" in node:
            return st.one_of([self.valid(branch) for branch in node["oneOf"]])
        if "const" in node:
            return st.just(node["const"])
        if "enum" in node:
            return st.sampled_from(node["enum"])
        types = node.get("type")
        if isinstance(types, list):
            return st.one_of([self.valid({**node, "type": t}) for t in types])
        if types == "null":
            return st.none()
        if types == "boolean":
            return st.booleans()
        if types == "integer":
            return st.integers(int(node.get("minimum", -(2 ** 53))), 2 ** 53)
        if types == "number":
            low, high = node.get("minimum", -DOUBLE_MAX), node.get("maximum", DOUBLE_MAX)
            return st.floats(low, high, allow_nan=False) | st.integers(int(max(low, -(2 ** 53))), 2 ** 53)
        if types == "string":
            if node.get("format") == "date-time":
                # years a naive local time converts in any zone; offsets in whole minutes (RFC 3339)
                offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
                    lambda m: _dt.timezone(_dt.timedelta(minutes=m)))
                moments = st.datetimes(_dt.datetime(1971, 1, 1), _dt.datetime(9998, 12, 31),
                                       timezones=st.none() | offsets)
                return st.builds(_iso, moments,
                                 st.sampled_from(["T", " "]), st.sampled_from(["seconds", "milliseconds",
                                                                               "microseconds", "minutes"]))
            if "pattern" in node:
                return st.from_regex(node["pattern"], fullmatch=True).filter(lambda s: "\n" not in s)
            return st.text(st.characters(blacklist_categories=("Cs",)), min_size=node.get("minLength", 0),
                           max_size=min(node.get("maxLength", 20), 300))
        if types == "array":
            return st.lists(self.valid(node.get("items", {})), min_size=node.get("minItems", 0), max_size=4)
        if types == "object":
            return self._object(node)
        if not node or set(node) <= {"description"}:
            return JSON
        raise AssertionError(f"no strategy for {node}")

    def _object(self, node: dict) -> st.SearchStrategy:
        properties = node.get("properties", {})
        required = node.get("required", [])
        extra = node.get("additionalProperties", True)
        names = self.valid(node["propertyNames"]) if "propertyNames" in node else KEYS
        if extra is True:
            extra_values, names = JSON, names.filter(lambda k: k not in properties)
        elif extra is False:
            extra_values = None
        else:
            extra_values = self.valid(extra)
        fixed = st.fixed_dictionaries({k: self.valid(properties[k]) for k in required},
                                      optional={k: self.valid(v) for k, v in properties.items() if k not in required})
        others = (st.dictionaries(names, extra_values, max_size=min(4, node.get("maxProperties", 4)))
                  if extra_values is not None else st.just({}))
        return st.tuples(fixed, others).map(lambda pair: {**pair[1], **pair[0]})

    def breaking(self, node: dict, candidates: list) -> list:
        """The candidate values ``node`` rejects."""
        return [value for value in candidates if not self.is_valid(node, value)]

    def invalid_object(self, node: dict, skip=lambda key, value: False) -> st.SearchStrategy:
        """A valid instance of the object ``node`` with one rule broken: a required field removed, or one
        field's value replaced by a value its schema rejects (except where ``skip(key, value)``)."""
        node = self.resolve(node)
        properties = node["properties"]
        mutations = [("drop", key, None) for key in node.get("required", [])]
        for key, sub in properties.items():
            mutations += [("set", key, value) for value in self.breaking(sub, BAD_VALUES) if not skip(key, value)]
        assert mutations

        def apply(pair):
            instance, (action, key, value) = pair
            instance = dict(instance)
            if action == "drop":
                instance.pop(key, None)
            else:
                instance[key] = value
            return instance

        return st.tuples(self.valid(node), st.sampled_from(mutations)).map(apply)


def _iso(moment, sep: str, timespec: str) -> str:
    text = moment.isoformat(sep=sep, timespec=timespec)
    return text.replace("+00:00", "Z") if text.endswith("+00:00") else text


# Values that break some rule of some field: wrong types, empty or long names, non-finite-looking
# numbers, nested structures where flat ones belong, malformed times, too many features.
BAD_VALUES = [
    None, True, False, 0, -1, 1.5, "", "x", "a" * 257, [], [1], {}, {"f": [1]}, {"f": {"x": 1}}, {"r": 1},
    {"r": None}, "not a time", "2026-01-01T", "01/02/2026",
    {f"f{i}": i for i in range(2001)}, {"": 1},
]
