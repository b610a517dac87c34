"""Reading feature rows from CSV or JSONL files (for ``driftline reference build``).

CSV cells are typed as live JSON values would be (:func:`detectors.values.parse_text`):
empty is missing, ``True``/``false``/... are bools, numbers are numbers. A column
declared ``categorical`` keeps its text as written (a zip code ``01234`` stays
``"01234"``); a first column with an empty header is the index pandas' ``to_csv``
writes by default, and is left out.
"""
from __future__ import annotations

import csv
from pathlib import Path

import orjson

from detectors.values import BOOL_TEXT, parse_text


def _cell(text: str, kind: str | None):
    if kind == "categorical":
        stripped = text.strip()
        return None if stripped == "" else (parse_text(stripped) if stripped in BOOL_TEXT else text)
    return parse_text(text)


def _counted(lines, progress):
    """``lines``, reporting the characters read so far to ``progress`` every 1,000 lines."""
    done = 0
    for i, line in enumerate(lines):
        done += len(line)
        if progress is not None and not i % 1000:
            progress(done)
        yield line


def read_rows(path: Path, exclude: set = frozenset(), types: dict | None = None, progress=None) -> dict[str, list]:
    """Columns of a CSV (header row) or JSONL file (objects, optionally with ``features`` and
    ``segment`` objects, as prediction events have: a segment attribute becomes a column).

    ``exclude`` names are dropped; ``types`` (name -> type) says how CSV text is read;
    ``progress(done)`` hears about the bytes read (about: characters, for CSV).
    """
    types = types or {}
    rows: list[dict] = []
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        with path.open("rb") as fh:
            for line in _counted(fh, progress):
                if line.strip():
                    obj = orjson.loads(line)
                    if isinstance(obj.get("features"), dict):
                        segment = obj.get("segment")
                        obj = {**(segment if isinstance(segment, dict) else {}), **obj["features"]}
                    rows.append(obj)
    else:
        with path.open(newline="") as fh:
            reader = csv.reader(_counted(fh, progress))
            header = next(reader, [])
            index_column = bool(header) and header[0] == ""   # pandas' to_csv(index=True)
            names = header[1:] if index_column else header
            kinds = [types.get(name) for name in names]
            for record in reader:
                if index_column:
                    record = record[1:]
                rows.append({name: _cell(text, kind) for name, text, kind in zip(names, record, kinds)})
    names = [n for n in dict.fromkeys(k for row in rows for k in row) if n not in exclude]
    return {name: [row.get(name) for row in rows] for name in names}


def reference_from_file(path: Path, reference_id: str, types: dict | None = None, segment_columns=(),
                        exclude: set = frozenset(), segment_min_size: int = 200, progress=None):
    """The profile ``driftline reference build`` stores: columns of ``path`` typed by ``types``,
    ``segment_columns`` taken out of the features and used as each row's segment."""
    from detectors.profile import ReferenceProfile

    types = types or {}
    columns = read_rows(path, exclude=set(exclude), types=types, progress=progress)
    segment_values = [columns.pop(name, None) for name in segment_columns]
    missing = [name for name, values in zip(segment_columns, segment_values) if values is None]
    if missing:
        raise KeyError(f"no segment column {', '.join(missing)} in {path}")
    segments = None
    if segment_columns:
        segments = [{name: str(value) for name, value in zip(segment_columns, row) if value is not None} or None
                    for row in zip(*segment_values)]
    return ReferenceProfile.from_columns(columns, kinds={k: v for k, v in types.items() if k in columns},
                                         reference_id=reference_id, segments=segments,
                                         segment_min_size=segment_min_size)
