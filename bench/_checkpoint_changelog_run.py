"""One side of bench.checkpoint_changelog, in its own process so the code under test is whichever
``detectors``/``streams`` packages come first on sys.path (this checkout's, or a baseline's).

    python bench/_checkpoint_changelog_run.py CORE_DIR REFERENCE WINDOW EVENTS EVERY   -> one JSON line

One model version (bench.common's 20 features, a label right after each prediction, 10-event
messages) folds EVENTS predictions; every EVERY predictions its checkpoint is written to a dict
state table as the worker writes it (``StateStore.save_checkpoint``). Reported: the bytes the
checkpoints wrote (the table's writes, deletes as their key) against the input bytes (the JSON
messages of the predictions and labels), the bytes the table holds at the end, the CPU per
checkpoint (``time.process_time``), whether the last checkpoint restores to the same status, and (a
checkout with block checkpoints) the bytes of new blocks per leaf: the rest of ``written_bytes``
is the skeleton, the pack headers and the packs folded into new ones.
"""
from __future__ import annotations

import sys
import time

import orjson

CORE, REFERENCE, WINDOW, EVENTS, EVERY = sys.argv[1], *map(int, sys.argv[2:6])
ROOT = __file__.rsplit("/bench/", 1)[0]
sys.path[:0] = [CORE, ROOT]

from bench import common  # noqa: E402
from detectors.monitor import ModelMonitor  # noqa: E402
from detectors.settings import ModelSettings  # noqa: E402
from streams.records import validate_label, validate_prediction  # noqa: E402
from streams.state import REFERENCE_PREFIX, StateStore  # noqa: E402


class Table(dict):
    """Counts what a changelog would receive: each write's key and value, each delete's key."""
    write_partition = None
    written = 0

    def __setitem__(self, key, value):
        if not key.startswith(REFERENCE_PREFIX):
            self.written += len(key) + len(value)
        super().__setitem__(key, value)

    def pop(self, key, default=None):
        if key in self:
            self.written += len(key)
        return super().pop(key, default)


def main() -> None:
    monitor = ModelMonitor("m", ModelSettings(reference_size=REFERENCE, window_size=WINDOW))
    preds, labels = common.predictions(EVENTS, model="m", seed=100)
    input_bytes = sum(len(orjson.dumps(preds[i:i + 10])) + len(orjson.dumps(labels[i:i + 10]))
                      for i in range(0, EVENTS, 10))
    preds = [validate_prediction(p, p["timestamp"]) for p in preds]
    labels = [validate_label(x, x["timestamp"]) for x in labels]
    table = Table()
    store = StateStore(table)
    cpu, checkpoints = 0.0, 0
    by_leaf, seen = {}, set()        # this checkout: the new bytes of each leaf's blocks (streams.state_blocks)
    for start in range(0, EVENTS, 10):
        monitor.add_predictions(preds[start:start + 10], offset=start, partition=0)
        monitor.add_labels(labels[start:start + 10])
        for version in monitor.versions.values():
            version.closed_windows.clear()      # the stream layer takes them after each message
        if (start + 10) % EVERY == 0 or start + 10 >= EVENTS:     # and once at the end
            t0 = time.process_time()
            store.save_checkpoint(b"m", {"monitor": monitor, "outbox": []}, 0)
            cpu += time.process_time() - t0
            checkpoints += 1
            packs = getattr(store, "packs", {}).get(b"m")
            if packs is not None:
                for path, leaf in packs.leaves.items():
                    where = "/".join(map(str, path[-2:]))
                    by_leaf[where] = by_leaf.get(where, 0) + sum(
                        size for name, size in zip(leaf.names, leaf.sizes) if name not in seen)
                seen = {name for leaf in packs.leaves.values() for name in leaf.names}
    restored = StateStore(table).load_checkpoint(b"m")["monitor"]
    held = sum(len(k) + len(v) for k, v in table.items() if not k.startswith(REFERENCE_PREFIX))
    print(orjson.dumps({"input_bytes": input_bytes, "written_bytes": table.written, "held_bytes": held,
                        "checkpoints": checkpoints, "cpu_ms_per_checkpoint": 1e3 * cpu / checkpoints,
                        "leaf_bytes_written": sum(by_leaf.values()) if by_leaf else None,
                        "top_leaves": sorted(by_leaf.items(), key=lambda kv: -kv[1])[:6],
                        "restores_same": restored.status()["versions"]["1"]["counts"]
                        == monitor.status()["versions"]["1"]["counts"]}).decode())


if __name__ == "__main__":
    main()
