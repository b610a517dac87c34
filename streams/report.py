"""The dashboard's pages and ``driftline report``: the window history drawn with plotly.

One page per model: for each version, rolling metrics beside the CBPE estimate with the
alerts marked, a heatmap of every feature's drift over the windows, the reference against
the current histogram of one feature, and the alerts with their evidence and the
``driftline audit`` command. plotly.js is inlined, so a page or a report works offline;
the layout is a jinja2 template (streams/templates).

Pages are rendered from data (:func:`model_page`), and served by the worker (/dashboard),
by ``driftline dashboard`` (standalone, reading Redis) or written by ``driftline report``.
"""
from __future__ import annotations

import datetime as dt
import functools
import math
from pathlib import Path
from urllib.parse import quote, urlencode

import jinja2
from markupsafe import escape
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from sinks import StoreUnavailable
from sinks.history import UnknownModel, models_sync, read_history_sync, versions_sync

TEMPLATES = Path(__file__).with_name("templates")
_SEVERITY_COLOURS = {"critical": "#b00020", "warning": "#e08a00", "info": "#2f6fdf"}


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined)


def _utc(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _when(ts: float | None):
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc)


def _div(figure: go.Figure, div_id: str) -> str:
    figure.update_layout(margin={"l": 60, "r": 20, "t": 30, "b": 40}, template="plotly_white")
    return figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                          config={"displaylogo": False, "responsive": True})


def timeline(version: str, windows: list[dict]) -> go.Figure:
    """Rolling metrics and the CBPE estimate at each window's end; a marker per alert raised."""
    figure = go.Figure()
    x = [_when(w.get("end")) for w in windows]
    names = sorted({m for w in windows for m, v in (w.get("metrics") or {}).items() if v is not None})
    for name in names:
        figure.add_trace(go.Scatter(x=x, y=[(w.get("metrics") or {}).get(name) for w in windows],
                                    mode="lines+markers", name=f"rolling {name}"))
    estimate = [(w.get("estimate") or {}).get("accuracy") for w in windows]
    if any(v is not None for v in estimate):
        figure.add_trace(go.Scatter(x=x, y=estimate, mode="lines+markers", name="CBPE estimated accuracy",
                                    line={"dash": "dash"}))
    primary = names[0] if names else None
    marks = [(w, a) for w in windows for a in w.get("alerts") or []]
    if marks:
        figure.add_trace(go.Scatter(
            x=[_when(w.get("end")) for w, _ in marks],
            y=[((w.get("metrics") or {}).get(primary) if primary else None) or 0.0 for w, _ in marks],
            mode="markers", name="alerts", marker={"symbol": "x", "size": 12,
                                                   "color": [_SEVERITY_COLOURS.get(a["severity"], "#555")
                                                             for _, a in marks]},
            text=[f"{a['kind']} ({a['severity']}): {a.get('message') or ''}" for _, a in marks],
            hovertemplate="%{text}<extra></extra>"))
    figure.update_layout(height=340, xaxis_title="window end (UTC, event time)", yaxis_title="metric",
                         legend={"orientation": "h"})
    return figure


def outcomes(windows: list[dict]) -> go.Figure | None:
    """Each window's latency percentiles (ms, left axis) and KPIs' rolling means (right axis); None
    when no window has either."""
    x = [_when(w.get("end")) for w in windows]
    latency = [w.get("latency") or {} for w in windows]
    kpis = sorted({name for w in windows for name in (w.get("kpis") or {})})
    if not any(entry.get("n") for entry in latency) and not kpis:
        return None
    figure = go.Figure()
    for q in ("p50", "p95", "p99"):
        figure.add_trace(go.Scatter(x=x, y=[(entry.get("percentiles") or {}).get(q) for entry in latency],
                                    mode="lines+markers", name=f"latency {q} (ms)"))
    for q, limit in sorted({(q, slo["limit"]) for entry in latency for q, slo in (entry.get("slo") or {}).items()}):
        figure.add_hline(y=limit, line_dash="dot", annotation_text=f"SLO {q} {limit:g} ms")
    for name in kpis:
        figure.add_trace(go.Scatter(x=x, y=[((w.get("kpis") or {}).get(name) or {}).get("mean") for w in windows],
                                    mode="lines", name=f"{name} (rolling mean)", yaxis="y2", line={"dash": "dash"}))
    figure.update_layout(height=300, xaxis_title="window end (UTC, event time)", yaxis_title="latency (ms)",
                         yaxis2={"title": "KPI", "overlaying": "y", "side": "right"}, legend={"orientation": "h"})
    return figure


def _strength(p_value) -> float | None:
    if p_value is None or not isinstance(p_value, (int, float)) or math.isnan(p_value):
        return None
    return -math.log10(max(p_value, 1e-300))


def heatmap(windows: list[dict]) -> tuple[go.Figure, list[str]]:
    """One row per feature, one column per window: −log10 of the drift test's p-value."""
    features = sorted({f for w in windows for f, r in (w.get("features") or {}).items()
                       if r.get("p_value") is not None})
    z = [[_strength(((w.get("features") or {}).get(f) or {}).get("p_value")) for w in windows] for f in features]
    text = [[("drifted" if ((w.get("features") or {}).get(f) or {}).get("drifted") else "") for w in windows]
            for f in features]
    figure = go.Figure(go.Heatmap(z=z, x=[str(w["index"]) for w in windows], y=features, text=text,
                                  colorscale="YlOrRd", colorbar={"title": "−log10 p"},
                                  hovertemplate="feature %{y}, window %{x}: −log10 p = %{z:.2f} %{text}"
                                                "<extra></extra>"))
    figure.update_layout(height=max(220, 40 + 28 * len(features)), xaxis_title="window",
                         xaxis={"type": "category"})
    return figure, features


def feature_histogram(feature: str, window: dict) -> go.Figure:
    """Share of the reference and of the window in each of the reference's bins."""
    histogram = ((window.get("features") or {}).get(feature) or {}).get("histogram") or {}
    figure = go.Figure()
    for side in ("reference", "current"):
        counts = histogram.get(side) or []
        total = sum(counts) or 1
        figure.add_trace(go.Bar(x=histogram.get("bins") or [], y=[c / total for c in counts],
                                name="reference" if side == "reference" else f"window {window['index']}"))
    figure.update_layout(barmode="group", height=320, yaxis_title="share", yaxis_tickformat=".0%")
    return figure


def _chosen_feature(windows: list[dict], features: list[str], wanted: str | None) -> tuple[str | None, dict]:
    """The feature to draw and the window to draw it in: the one asked for, else the most
    recently drifted feature; its latest drifted window, else the last window."""
    if wanted in features:
        feature = wanted
    else:
        drifted = [f for w in reversed(windows) for f in w.get("drifted_features") or [] if f in features]
        feature = drifted[0] if drifted else (features[0] if features else None)
    for w in reversed(windows):
        if feature and ((w.get("features") or {}).get(feature) or {}).get("drifted"):
            return feature, w
    return feature, windows[-1]


def _audit_command(alert: dict) -> str:
    from streams.audit import WINDOW_KINDS

    recompute = " --recompute" if alert["kind"] in WINDOW_KINDS else ""
    return f"driftline audit {alert['alert_id']}{recompute}"


def _evidence(window: dict, alert: dict) -> str:
    parts = []
    for feature in alert.get("features") or []:
        result = (window.get("features") or {}).get(feature) or {}
        if result.get("p_value") is not None:
            parts.append(f"{feature}: {result['detector']} statistic {result['statistic']:.4g}, "
                         f"p {result['p_value']:.3g}, effect {result.get('effect_size') or 0:.3g}")
    return "; ".join(parts) or "-"


def model_page(model: str, history: dict[str, list[dict]], *, feature: str | None = None,
               link_base: str | None = None, period: tuple[float | None, float | None] = (None, None),
               version_links: list[str] | None = None) -> str:
    """The HTML page of ``model`` from its window history ({version: windows, oldest first}).

    ``link_base`` (the dashboard's URL of this page) adds links to pick a version or a feature;
    a report has none. A period without windows says so.
    """
    from streams.metrics import _version

    since, until = period
    span = ("" if since is None and until is None else f"from {_utc(since) if since else 'the start'} "
            f"to {_utc(until) if until else 'now'} (UTC, event time)")
    versions = []
    for version, windows in history.items():
        entry = {"version": version, "windows": len(windows), "period": span,
                 "empty_message": f"No window of {model} v{version} closed in this period." if span
                 else f"No window of {model} v{version} tested yet."}
        if windows:
            heat, features = heatmap(windows)
            chosen, at = _chosen_feature(windows, features, feature)
            slug = quote(version, safe="")
            entry.update(
                timeline=_div(timeline(version, windows), f"timeline-{slug}"),
                outcomes=_div(figure, f"outcomes-{slug}") if (figure := outcomes(windows)) is not None else "",
                heatmap=_div(heat, f"heatmap-{slug}"),
                feature=chosen or "-", feature_window=at["index"],
                histogram=_div(feature_histogram(chosen, at), f"histogram-{slug}") if chosen else "",
                feature_links=[(f, f"{link_base}?{urlencode({'version': version, 'feature': f})}")
                               for f in features] if link_base else [],
                alerts=[{"window": w["index"], "end": _utc(w.get("end")), "kind": a["kind"],
                         "severity": a["severity"], "message": a.get("message") or "", "alert_id": a["alert_id"],
                         "evidence": _evidence(w, a), "audit": _audit_command(a)}
                        for w in reversed(windows) for a in w.get("alerts") or []])
        versions.append(entry)
    links = [(f"v{v}", f"{link_base}?{urlencode({'version': v})}") for v in version_links or []] if link_base else []
    any_windows = any(v["windows"] for v in versions)
    return _environment().get_template("model.html.j2").render(
        title=model, model=model, versions=versions if any_windows or not span else [],
        subtitle="Window history from Redis: every tested window's drift tests, metrics and alerts.",
        empty_message=f"No window of {model} closed in this period ({span}).", links=links,
        plotly_js=get_plotlyjs(), generated=_utc(dt.datetime.now(dt.timezone.utc).timestamp()) + " UTC",
        driftline_version=_version())


def index_page(models: list[tuple[str, list[str]]], base: str) -> str:
    return _environment().get_template("index.html.j2").render(models=models, base=base)


def dashboard_response(redis_url: str, base: str, model: str | None, query, prefix: str) -> tuple[int, str]:
    """(HTTP status, HTML) of a dashboard URL: the index, a model's page, or a clear error.
    ``prefix`` is the app id the Redis keys are under."""
    try:
        if not model:
            return 200, index_page(models_sync(redis_url, prefix=prefix), base)
        history = read_history_sync(redis_url, model, query.get("version") or None, prefix=prefix)
        return 200, model_page(model, history, feature=query.get("feature"),
                               link_base=f"{base}/{quote(model, safe='')}",
                               version_links=versions_sync(redis_url, model, prefix=prefix))
    except UnknownModel as exc:
        return 404, _error_page(str(exc))
    except StoreUnavailable as exc:
        return 503, _error_page(f"Redis cannot be read: {exc}")


def _error_page(message: str) -> str:
    return ('<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>driftline</title></head>'
            f"<body><h1>driftline</h1><p>{escape(message)}</p></body></html>")
