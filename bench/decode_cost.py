"""Decode + validate cost per prediction and per label: the reference (orjson + validators) vs typed (msgspec).

    python -m bench.decode_cost [--n 20000] [--repeat 5] [--gc-thresholds 50000,50,100]

The bench data set (20 features, a score, a label each) framed as single-event messages and as
micro-batches of 1,000; each decoder runs over the same bytes ``--repeat`` times, the median
µs per event is reported side by side, with the internal-message format measured alongside:
encoding the valid events of a batch for the internal topic and decoding them in the monitor,
as a list of dicts (orjson; before 2026-12-03) and as the columns ingest
writes now (``streams.internal_format``), each decoded into the ``PredictionColumns`` the monitor folds in.
``--gc-thresholds`` runs it under the worker's collector policy (``streams.gc_policy.apply``, after
the data set is built); without it, under CPython's defaults.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import time

import orjson

from bench import common
from detectors.columns import LabelColumns, PredictionColumns
from streams import records
from streams.ingest import body_of
from streams.internal_format import decode_label_columns, decode_prediction_columns


def _time(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        samples.append(time.process_time() - start)
    return statistics.median(samples)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--gc-thresholds", default="", help="the worker's gc policy, e.g. 50000,50,100")
    args = ap.parse_args(argv)
    preds, labels = common.predictions(args.n, seed=11)
    thresholds = [int(v) for v in args.gc_thresholds.split(",") if v]
    if thresholds:
        from streams import gc_policy

        gc_policy.apply(thresholds)
    results: dict = {"n": args.n, "gc_thresholds": list(gc.get_threshold()), "decode_us_per_event": {},
                     "internal_us_per_event": {}}
    for kind, events, validate in (("prediction", preds, records.validate_prediction),
                                   ("label", labels, records.validate_label)):
        for framing in (1, 1000):
            raws = common.encode(events, framing)
            ref = _time(lambda: [records.decode_reference(r, 0.0, validate) for r in raws], args.repeat)
            typed = _time(lambda: [records.decode(r, 0.0, validate) for r in raws], args.repeat)
            results["decode_us_per_event"][f"{kind}/{framing}"] = {
                "reference": 1e6 * ref / args.n, "typed": 1e6 * typed / args.n, "ratio": ref / typed}
    # the internal hop: ingest encodes a model's valid events, the monitor decodes them
    batches = [records.decode(r, 0.0, records.validate_prediction)[0] for r in common.encode(preds, 1000)]
    encoded = [orjson.dumps({"p": b}) for b in batches]
    results["internal_us_per_event"]["dicts: orjson encode"] = 1e6 * _time(
        lambda: [orjson.dumps({"p": b}) for b in batches], args.repeat) / args.n
    results["internal_us_per_event"]["dicts: orjson decode"] = 1e6 * _time(
        lambda: [orjson.loads(e) for e in encoded], args.repeat) / args.n
    # what the monitor stage folds in: the message decoded into PredictionColumns, from event dicts
    # (before the columnar hop) and from columns (streams.internal_format, what ingest writes now)
    runs = [[[0, i, 0, len(b)]] for i, b in enumerate(batches)]
    results["internal_us_per_event"]["event dicts: encode (ingest)"] = 1e6 * _time(
        lambda: [body_of("p", b, r, columns=False) for b, r in zip(batches, runs)], args.repeat) / args.n
    results["internal_us_per_event"]["event dicts: decode to PredictionColumns"] = 1e6 * _time(
        lambda: [PredictionColumns.from_events(orjson.loads(e)["p"]) for e in encoded], args.repeat) / args.n
    results["internal_us_per_event"]["columns: encode (ingest)"] = 1e6 * _time(
        lambda: [body_of("p", b, r, columns=True) for b, r in zip(batches, runs)], args.repeat) / args.n
    encoded_columns = [body_of("p", b, r, columns=True) for b, r in zip(batches, runs)]
    results["internal_us_per_event"]["columns: decode to PredictionColumns"] = 1e6 * _time(
        lambda: [decode_prediction_columns(orjson.loads(e)["pc"]) for e in encoded_columns], args.repeat) / args.n
    label_batches = [records.decode(r, 0.0, records.validate_label)[0] for r in common.encode(labels, 1000)]
    label_dicts = [body_of("l", b, r, columns=False) for b, r in zip(label_batches, runs)]
    label_columns = [body_of("l", b, r, columns=True) for b, r in zip(label_batches, runs)]
    results["internal_us_per_event"]["label dicts: decode to LabelColumns"] = 1e6 * _time(
        lambda: [LabelColumns.from_events(orjson.loads(e)["l"]) for e in label_dicts], args.repeat) / args.n
    results["internal_us_per_event"]["label columns: decode to LabelColumns"] = 1e6 * _time(
        lambda: [decode_label_columns(orjson.loads(e)["lc"]) for e in label_columns], args.repeat) / args.n
    results["internal_bytes_per_event"] = {"dicts": sum(map(len, encoded)) / args.n,
                                           "columns": sum(map(len, encoded_columns)) / args.n}
    for section in ("decode_us_per_event", "internal_us_per_event", "internal_bytes_per_event"):
        print(section)
        for key, value in results[section].items():
            print(f"  {key:28s} {value if isinstance(value, float) else ', '.join(f'{k} {v:.2f}' for k, v in value.items())}")
    common.save("decode_cost", results)
    return results


if __name__ == "__main__":
    main()
