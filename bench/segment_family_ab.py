"""In-process A/B of segment drift's family computation: two versions of
``detectors/segment_drift.py`` alternating on the same captured windows (issue 13).

    python -m bench.segment_family_ab --a main [--b WORKTREE] [--passes 15] [--windows 20]

Runs bench/_monitor_cost_run.py's workload (batch 1,000, 20,000 predictions, seed 1) once with
this checkout's core, keeping the arguments of every ``segment_family`` call of a window close,
then times ``segment_family`` of version A (``git show A:detectors/segment_drift.py``, imported
as a module of its own over this checkout's other modules) and of version B (a git ref, or this
checkout's file by default) on the last ``--windows`` windows, alternating pass by pass, and
prints the medians. First it asserts both give the same family (keys, features, tests, and every
exact p-value) and the same drifted results. The KS caches are emptied at the start of every pass
(``--warm``: never), so each pass pays the exact p-values a bench run of those windows pays.
CPU time (``time.process_time``): another process on the machine moves both sides alike.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _version(ref: str | None, name: str, folder: str):
    """detectors/segment_drift.py at ``ref`` (this checkout's when None), as module ``name``."""
    path = ROOT / "detectors" / "segment_drift.py"
    if ref is not None:
        path = pathlib.Path(folder) / f"{name}.py"
        path.write_text(subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:detectors/segment_drift.py"],
                                       check=True, capture_output=True, text=True).stdout)
    spec = importlib.util.spec_from_file_location(name, path)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)   # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="git ref of version A")
    ap.add_argument("--b", default=None, help="git ref of version B (default: this checkout's file)")
    ap.add_argument("--passes", type=int, default=15)
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--warm", action="store_true", help="keep the KS caches across passes")
    args = ap.parse_args(argv)
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    import detectors.ks as ks
    import detectors.window_tests as window_tests

    captured = []
    original = window_tests.segment_family

    def keep(*a, **k):
        captured.append((a, k))
        return original(*a, **k)
    window_tests.segment_family = keep
    import _monitor_cost_run as run
    sys.argv = ["_monitor_cost_run.py", str(ROOT), "1000", "20000", "1"]
    with contextlib.redirect_stdout(io.StringIO()):
        run.main()
    window_tests.segment_family = original
    windows = captured[-args.windows:]

    with tempfile.TemporaryDirectory() as folder:
        a, b = _version(args.a, "segment_drift_a", folder), _version(args.b, "segment_drift_b", folder)
    for call, kwargs in windows:
        (family_a, drifted_a), (family_b, drifted_b) = a.segment_family(*call, **kwargs), b.segment_family(*call, **kwargs)
        assert [(t.key, t.feature, t.detector) for t in family_a] == [(t.key, t.feature, t.detector) for t in family_b]
        both = [(x.p_value, y.p_value) for x, y in zip(family_a, family_b) if x.exact and y.exact]
        assert all(x == y for x, y in both), "an exact p-value differs"
        assert drifted_a == drifted_b, "drifted results differ"

    def one_pass(module) -> float:
        if not args.warm:
            ks._EXACT_CACHE.clear()
            module._KS_BOUNDS.clear()
        spent = 0.0
        for call, kwargs in windows:
            started = time.process_time()
            module.segment_family(*call, **kwargs)
            spent += time.process_time() - started
        return spent / len(windows) * 1e3

    times: dict[str, list[float]] = {"a": [], "b": []}
    for _ in range(args.passes):
        times["a"].append(one_pass(a))
        times["b"].append(one_pass(b))
    ma, mb = statistics.median(times["a"]), statistics.median(times["b"])
    print(f"segment_family, ms of CPU per window ({len(windows)} windows, median of {args.passes} alternating passes, "
          f"KS caches {'kept' if args.warm else 'emptied every pass'}): "
          f"A ({args.a}) {ma:.2f}, B ({args.b or 'this checkout'}) {mb:.2f}, A/B {ma / mb:.2f}x")


if __name__ == "__main__":
    main()
