"""CPU of the open window alone: rows in, and the columns its checks take at the close (issue 16 item 3).

    python -m bench.window_buffer_cost [--rows 1000] [--reps 30]

The list buffer (``detectors.window.ColumnBuffer``, converted at the close by ``WindowColumn``,
the window before issue16-columns) against the typed one (``detectors.window_buffer.WindowBuffer``),
on bench.common's predictions (10 numeric and 10 categorical features, prediction, score):
rows appended one by one (the row-by-row path, batch 1) or extended as columns (the columnar
path, ``PredictionColumns``), then the window's columns built as the checks take them (values
converted, categorical counts). ``time.process_time``, the two alternating, median of ``--reps``.
"""
from __future__ import annotations

import argparse
import statistics
import time

from bench import common
from detectors.columns import PredictionColumns
from detectors.monitor import ModelMonitor
from detectors.outputs import PREDICTION, SCORE
from detectors.profile import WindowColumn
from detectors.settings import ModelSettings
from detectors.window import ColumnBuffer
from detectors.window_buffer import WindowBuffer
from streams.records import validate_prediction


def _reference(rows: int):
    monitor = ModelMonitor("m", ModelSettings(reference_size=2000, window_size=rows, calibrate_ert_windows=0))
    preds, _ = common.predictions(2000, seed=3)
    monitor.add_predictions([validate_prediction(p, p["timestamp"]) for p in preds])
    return monitor.versions["1"].reference


def _close(buffer, reference) -> None:
    if isinstance(buffer, WindowBuffer):
        columns = buffer.window_columns()
    else:
        kinds = reference.features
        columns = {name: WindowColumn(values, kinds[name].value_type) for name, values in buffer.columns().items()}
    for name, fp in reference.features.items():
        column = columns[name]
        column.present if fp.kind == "numeric" else column.counts


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args(argv)
    reference = _reference(args.rows)
    preds, _ = common.predictions(args.rows, seed=4, offset=5000)
    events = [validate_prediction(p, p["timestamp"]) for p in preds]
    rows = [{**e["features"], PREDICTION: e["prediction"], SCORE: e["score"]} for e in events]
    batch = PredictionColumns.from_events(events)
    columns = {**batch.features, PREDICTION: batch.prediction, SCORE: batch.score}

    def lists() -> dict:   # what add_columns gave the list buffer (built per batch, so timed)
        return {**{name: batch.feature_values(name) for name in batch.features}, PREDICTION: batch.prediction,
                SCORE: [None if v != v else v for v in batch.score.tolist()]}
    make = {"lists": lambda: ColumnBuffer(reference.features), "typed": lambda: WindowBuffer(reference, args.rows)}
    spent: dict = {}
    for _ in range(args.reps):
        for name, new in make.items():
            for path in ("rows", "columns"):
                buffer = new()
                started = time.process_time()
                if path == "rows":
                    for row in rows:
                        buffer.append(dict(row))
                else:
                    buffer.extend(lists() if name == "lists" else columns, args.rows)
                filled = time.process_time()
                _close(buffer, reference)
                done = time.process_time()
                spent.setdefault((name, path, "in"), []).append(filled - started)
                spent.setdefault((name, path, "close"), []).append(done - filled)
    result = {f"{name}/{path}/{part}": round(statistics.median(times) / args.rows * 1e6, 3)
              for (name, path, part), times in spent.items()}
    for key, value in result.items():
        print(f"{key:24s} {value:7.3f} µs per row")
    common.save("window_buffer_cost", {"command": "python -m bench.window_buffer_cost", "rows": args.rows,
                                       "reps": args.reps, "us_per_row": result})
    return result


if __name__ == "__main__":
    main()
