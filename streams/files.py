"""Reading feature rows from CSV or JSONL files (for ``driftline reference build``)."""
from __future__ import annotations

import csv
from pathlib import Path

import orjson


def _cell(text: str):
    """CSV cells are text: empty means missing, numbers become numbers."""
    if text == "":
        return None
    try:
        return float(text) if any(c in text for c in ".eE") or text.lower() in ("nan", "inf") else int(text)
    except ValueError:
        return text


def read_rows(path: Path, exclude: set = frozenset()) -> dict[str, list]:
    """Columns of a CSV (header row) or JSONL file (objects, optionally with a ``features`` object)."""
    rows: list[dict] = []
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        with path.open("rb") as fh:
            for line in fh:
                if line.strip():
                    obj = orjson.loads(line)
                    rows.append(obj.get("features", obj) if isinstance(obj.get("features"), dict) else obj)
    else:
        with path.open(newline="") as fh:
            rows = [{k: _cell(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    names = [n for n in dict.fromkeys(k for row in rows for k in row) if n not in exclude]
    return {name: [row.get(name) for row in rows] for name in names}
