"""Issue 5, item 2: cost per window against Evidently and NannyML, on identical windows.

    /tmp/benchpeers/bin/python -m bench.peers [--windows 100] [--evidently-windows 20] [--nannyml-windows 100]

Run with the *peers* venv (Evidently and NannyML are never driftline
dependencies)::

    python3.11 -m venv /tmp/benchpeers
    /tmp/benchpeers/bin/pip install evidently nannyml "pandas<3" && /tmp/benchpeers/bin/pip install -e .

(pandas 3 breaks ``import evidently`` 0.7.23: ``infer_dtype_from_object`` is gone.)

Data: a 10,000-row reference and windows of 10,000 rows (1,000,000 rows for 100
windows), 20 features (10 numeric, 10 categorical). A quarter of the windows are
unshifted; the others shift one numeric feature by 0.1, 0.25 or 0.5 std and,
every other window, move 10 points of probability between two levels of one
categorical feature. Each tool uses its defaults:

* driftline: ``evaluate_window`` (KS / chi-squared + missing rate, BH at 1 %,
  PSI >= 0.1 gate), given the window as column lists, the way the worker does;
* Evidently: ``Report([DataDriftPreset()])`` (above 1,000 rows: normed
  Wasserstein for numeric, Jensen-Shannon for categorical, threshold 0.1);
* NannyML: ``UnivariateDriftCalculator`` with its default methods (Jensen-Shannon
  for both kinds), ``chunk_size=10_000``, all windows in one ``calculate`` call.
  Its default thresholds (3 std of the statistic over *reference chunks*) are
  undefined with a one-chunk reference (every chunk alerts), so the threshold is
  ``ConstantThreshold(upper=0.1)``, Evidently's rule for categorical columns.

Agreement: over (window, feature) pairs, the share where both call it drifted
or both call it stable; plus the share of pairs with an injected shift each flags.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

# Both peers phone home (segment.io) by default; nothing here may leave 127.0.0.1.
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("EVIDENTLY_DISABLE_TELEMETRY", "1")

import numpy as np

from bench import common

N_REF = 10_000
WINDOW = 10_000


def shift_plan(k: int) -> tuple[dict, dict]:
    """(numeric shifts {col: std}, categorical shifts {col: True}) for window k."""
    if k % 4 == 0:
        return {}, {}
    numeric = {common.NUMERIC[k % 10]: (0.1, 0.25, 0.5)[k % 4 - 1]}
    categorical = {common.CATEGORICAL[(k * 3) % 10]: True} if k % 2 else {}
    return numeric, categorical


def window_data(k: int):
    numeric_shift, cat_shift = shift_plan(k)
    num, cat = common.feature_matrix(WINDOW, seed=100 + k, shift=numeric_shift)
    if cat_shift:
        rng = np.random.default_rng(500 + k)
        col = common.CATEGORICAL.index(next(iter(cat_shift)))
        # move ~10 points of probability from level "a" (p=0.4) to level "e" (p=0.08)
        swap = (cat[:, col] == "a") & (rng.random(WINDOW) < 0.25)
        cat[swap, col] = "e"
    return num, cat


def frame(num, cat):
    import pandas as pd

    df = pd.DataFrame(num, columns=common.NUMERIC)
    for i, c in enumerate(common.CATEGORICAL):
        df[c] = cat[:, i]
    return df


def columns(num, cat) -> dict:
    out = {c: num[:, i].tolist() for i, c in enumerate(common.NUMERIC)}
    out.update({c: cat[:, i].tolist() for i, c in enumerate(common.CATEGORICAL)})
    return out


def run_driftline(ref, windows) -> tuple[list, list]:
    from detectors.profile import ReferenceProfile
    from detectors.suite import evaluate_window

    kinds = {**{c: "numeric" for c in common.NUMERIC}, **{c: "categorical" for c in common.CATEGORICAL}}
    profile = ReferenceProfile.from_columns(columns(*ref), kinds=kinds, reference_id="bench")
    times, verdicts = [], []
    for num, cat in windows:
        cols = columns(num, cat)
        t0 = time.perf_counter()
        report = evaluate_window(profile, cols)
        times.append(time.perf_counter() - t0)
        drifted = {r.feature for r in report.drifted}
        verdicts.append({f: f in drifted for f in common.FEATURES})
    return times, verdicts


def run_evidently(ref, windows) -> tuple[list, list]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=common.NUMERIC, categorical_columns=common.CATEGORICAL)
    reference = Dataset.from_pandas(frame(*ref), data_definition=definition)
    times, verdicts = [], []
    for num, cat in windows:
        current_df = frame(num, cat)
        t0 = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(current_df, data_definition=definition),
                                                   reference)
        result = snapshot.dict()
        times.append(time.perf_counter() - t0)
        verdict = {}
        for metric in result["metrics"]:
            config = metric.get("config", {})
            if not config.get("type", "").endswith("ValueDrift"):
                continue
            method, threshold = config.get("method", ""), config["threshold"]
            value = float(metric["value"])
            is_distance = any(w in method.lower() for w in ("distance", "psi", "divergence", "wasserstein"))
            verdict[config["column"]] = value >= threshold if is_distance else value < threshold
        verdicts.append({f: bool(verdict.get(f, False)) for f in common.FEATURES})
    return times, verdicts


def run_nannyml(ref, windows) -> tuple[list, list, float]:
    import nannyml as nml
    import pandas as pd

    from nannyml.thresholds import ConstantThreshold

    calc = nml.UnivariateDriftCalculator(column_names=common.FEATURES, treat_as_categorical=common.CATEGORICAL,
                                         chunk_size=WINDOW,
                                         thresholds={"jensen_shannon": ConstantThreshold(lower=None, upper=0.1)})
    t0 = time.perf_counter()
    calc.fit(frame(*ref))
    fit_seconds = time.perf_counter() - t0
    analysis = pd.concat([frame(num, cat) for num, cat in windows], ignore_index=True)
    t0 = time.perf_counter()
    results = calc.calculate(analysis)
    df = results.filter(period="analysis").to_df()
    total = time.perf_counter() - t0
    verdicts = []
    for i in range(len(windows)):
        row = df.iloc[i]
        v = {}
        for f in common.FEATURES:
            alerts = [bool(row[(f, m, "alert")]) for (c, m, field) in df.columns if c == f and field == "alert"]
            v[f] = any(alerts)
        verdicts.append(v)
    return [total / len(windows)] * len(windows), verdicts, fit_seconds


def agreement(a: list, b: list) -> float:
    pairs = [(x[f], y[f]) for x, y in zip(a, b) for f in common.FEATURES]
    return 100.0 * sum(p == q for p, q in pairs) / len(pairs)


def recall(verdicts: list, first: int = 0) -> dict:
    """Share of injected shifts flagged, by size, and false flags among unshifted (window, feature) pairs."""
    hits, shifted_total, false, clean_total = {}, {}, 0, 0
    for k, v in enumerate(verdicts, start=first):
        numeric_shift, cat_shift = shift_plan(k)
        for f in common.FEATURES:
            if f in numeric_shift or f in cat_shift:
                size = str(numeric_shift.get(f, "cat"))
                shifted_total[size] = shifted_total.get(size, 0) + 1
                hits[size] = hits.get(size, 0) + int(v[f])
            else:
                clean_total += 1
                false += int(v[f])
    return {"detected_%": {s: round(100 * hits[s] / shifted_total[s], 1) for s in sorted(shifted_total)},
            "false_flags_%": round(100 * false / max(clean_total, 1), 2)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", type=int, default=100)
    ap.add_argument("--evidently-windows", type=int, default=20)
    ap.add_argument("--nannyml-windows", type=int, default=100)
    ap.add_argument("--profile", action="store_true", help="cProfile 10 driftline windows")
    args = ap.parse_args(argv)

    ref = common.feature_matrix(N_REF, seed=1)
    windows = [window_data(k) for k in range(args.windows)]
    out: dict = {"windows": args.windows, "rows_per_window": WINDOW, "reference_rows": N_REF}

    times, dl = run_driftline(ref, windows)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run_driftline(ref, windows[:10])
        profiler.disable()
        path = common.RESULTS / "profile-evaluate-window-10k.pstats"
        common.RESULTS.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(str(path))
        stats = pstats.Stats(str(path))
        total = stats.total_tt
        rows = sorted(((ct / total, tt / total, f"{os.path.basename(k[0])}:{k[1]}({k[2]})")
                       for k, (cc, nc, tt, ct, _) in stats.stats.items()), reverse=True)
        print(f"cProfile of 10 x evaluate_window (10,000 rows, lists): {total:.2f}s")
        for ct, tt, name in rows[:30]:
            print(f"  {100 * ct:5.1f}% cum {100 * tt:5.1f}% own  {name}")
        own = sorted(rows, key=lambda r: -r[1])[:15]
        print("by own time:")
        for ct, tt, name in own:
            print(f"  {100 * tt:5.1f}% own {100 * ct:5.1f}% cum  {name}")
    out["driftline"] = {"windows": len(times), "median_s": common.median(times), "p90_s": float(np.percentile(times, 90)),
                        "quality": recall(dl)}
    print(f"driftline evaluate_window: {len(times)} windows, median {1000 * out['driftline']['median_s']:.1f} ms/window")

    for name, n in (("evidently", args.evidently_windows), ("nannyml", args.nannyml_windows)):
        n = min(n, args.windows)
        if n <= 0:
            continue
        try:
            if name == "evidently":
                t, v = run_evidently(ref, windows[:n])
                extra = {}
            else:
                t, v, fit = run_nannyml(ref, windows[:n])
                extra = {"fit_s": fit, "note": "one calculate() over all windows; time per window = total / n"}
        except Exception as exc:  # record honestly, carry on with the other peer
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            print(f"{name} failed: {out[name]['error']}")
            continue
        med = common.median(t)
        out[name] = {"windows": n, "median_s": med, "quality": recall(v),
                     "agreement_with_driftline_%": agreement(dl[:n], v),
                     "driftline_speedup_x": med / common.median(times[:n]), **extra}
        print(f"{name}: {n} windows, median {1000 * med:.1f} ms/window, "
              f"{out[name]['driftline_speedup_x']:.1f}x driftline's time, "
              f"agreement {out[name]['agreement_with_driftline_%']:.1f}%")
    print("detection by injected shift (driftline):", out["driftline"]["quality"])
    for name in ("evidently", "nannyml"):
        if "quality" in out.get(name, {}):
            print(f"detection by injected shift ({name}):", out[name]["quality"])
    common.save("peers", out)
    return out


if __name__ == "__main__":
    main()
