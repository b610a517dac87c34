"""``driftline`` command line: broker, worker, demo, simulate, status, history, dashboard, report, tail,
reference, audit."""
from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson
from rich.console import Console, Group
from rich.table import Table

from streams import config
from streams.producer import bootstrap_of

console = Console(width=None if sys.stdout.isatty() else 160)


def _settings(ctx: click.Context):
    return ctx.obj["settings"]


@click.group()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="TOML configuration file (default: $DRIFTLINE_CONFIG).")
@click.option("--broker", help="Kafka broker URL, e.g. kafka://127.0.0.1:9092 (default: $DRIFTLINE_BROKER).")
@click.option("--redis-url", help="Redis URL (default: $DRIFTLINE_REDIS_URL).")
@click.pass_context
def main(ctx: click.Context, config_path, broker, redis_url) -> None:
    """driftline: watch ML models in production for drift and degradation."""
    ctx.ensure_object(dict)
    ctx.obj["settings"] = config.use(config.load(config_path, broker=broker, redis_url=redis_url))


# -- services ------------------------------------------------------------------------------
@main.command()
@click.option("--port", default=9092, show_default=True)
def broker(port: int) -> None:
    """Run the embedded Kafka-compatible broker (Tansu, memory-only) on 127.0.0.1."""
    from streams.embedded import start_broker

    service = start_broker(port)
    console.print(f"broker listening on [bold]{service.url}[/] (memory-only; Ctrl-C stops it)")
    try:
        service.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()


@main.command()
@click.option("--loglevel", "-l", default="info", show_default=True)
@click.option("--web-port", type=int, help="Faust web server port (binds 127.0.0.1 unless web_host is set).")
@click.pass_context
def worker(ctx: click.Context, loglevel: str, web_port: int | None) -> None:
    """Run a monitoring worker. Start several with the same app id to share the partitions."""
    import dataclasses

    settings = _settings(ctx)
    if web_port:
        settings = config.use(dataclasses.replace(settings, web_port=web_port))
    from streams.topics import ensure_topics

    t = settings.topics
    ensure_topics(settings.broker, [t.predictions, t.labels, t.alerts, t.retrain, t.deadletter],
                  settings.partitions, settings.replication_factor)
    from faust import Worker

    from streams.app import app

    Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()


# -- traffic -------------------------------------------------------------------------------
@main.command()
@click.option("--events", default=12_000, show_default=True)
@click.option("--batch", default=100, show_default=True, help="Predictions per Kafka message (1 = single events).")
@click.option("--rate", type=float, help="Predictions per second (default: as fast as possible).")
@click.option("--shift-at", default=5_000, show_default=True)
@click.option("--concept-at", default=8_000, show_default=True)
@click.option("--model", default="phishing", show_default=True)
@click.option("--version", "model_version", default="v1", show_default=True)
@click.option("--seed", default=7, show_default=True)
@click.pass_context
def simulate(ctx, events, batch, rate, shift_at, concept_at, model, model_version, seed) -> None:
    """Publish traffic from a real model, with a covariate shift and a concept drift injected."""
    from streams.simulator import Scenario, publish

    settings = _settings(ctx)
    scenario = Scenario(events=events, shift_at=shift_at, concept_at=concept_at, model=model,
                        version=model_version, seed=seed)
    from streams.progress import progress

    with progress(console, "published", events) as update:
        sent = publish(scenario, bootstrap_of(settings.broker), settings.topics, batch=batch, rate=rate,
                       progress=update)
    console.print(f"published {sent} predictions to {settings.topics.predictions}")


# -- reading -------------------------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print raw JSON.")
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C (a live table on a terminal, plain tables otherwise).")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between refreshes with --watch.")
@click.option("--times", type=int, default=0, hidden=True, help="With --watch, stop after N refreshes.")
@click.pass_context
def status(ctx, as_json: bool, watch: bool, interval: float, times: int) -> None:
    """Latest status of every monitored model version (from Redis)."""
    import time

    from rich.live import Live

    from sinks import StoreUnavailable, read_status_sync

    redis_url = _settings(ctx).redis_url
    if not watch:
        statuses = read_status_sync(redis_url)
        if as_json:
            click.echo(orjson.dumps(statuses, option=orjson.OPT_INDENT_2).decode())
        else:
            console.print(_status_view(statuses))
        return

    def view():
        try:
            shown = _status_view(read_status_sync(redis_url))
        except StoreUnavailable as exc:     # keep watching: Redis may come back
            shown = f"[red]{exc}"
        return Group(f"[dim]{_utc(time.time())} UTC, every {interval:g} s (Ctrl-C stops)", shown)

    refreshes = 0
    try:
        if console.is_terminal:
            with Live(view(), console=console, refresh_per_second=4) as live:
                while not times or (refreshes := refreshes + 1) < times:
                    time.sleep(interval)
                    live.update(view())
        else:
            while True:
                console.print(view())
                refreshes += 1
                if times and refreshes >= times:
                    break
                time.sleep(interval)
    except KeyboardInterrupt:
        pass


def _status_view(statuses: list):
    """The status table, the worker counters and the sinks, as one renderable."""
    if not statuses:
        return Group("no models seen yet")
    table = Table("model", "version", "predictions", "labelled", "windows", "alerts", "primary metric",
                  "drifted (last window)", "active conditions")
    for s in statuses:
        counts = s.get("counts", {})
        rolling = s.get("rolling_metrics") or {}
        primary = next(iter(rolling.items()), (None, None))
        table.add_row(str(s.get("model")), str(s.get("model_version")), str(counts.get("predictions")),
                      str(counts.get("labelled")), str(counts.get("windows")), str(counts.get("alerts")),
                      f"{primary[0]}={primary[1]:.3f}" if primary[1] is not None else "-",
                      ", ".join((s.get("last_window") or {}).get("drifted_features", [])) or "-",
                      ", ".join(f"{k}:{f}" for k, f in s.get("active_conditions", [])) or "-")
    workers = [s.get("worker") or {} for s in statuses]
    counters = ("deadletter", "processing_errors", "redelivered_skipped", "input_gaps", "gap_records_recovered",
                "gap_reads_incomplete", "status_write_failures")
    lines = [table, "worker counters (max over workers): " + ", ".join(
        f"{name} {max(w.get(name, 0) for w in workers)}" for name in counters)]
    sinks = {name: stats for w in workers for name, stats in w.get("sinks", {}).items()}
    for name, stats in sorted(sinks.items()):
        lines.append(f"sink {name}: delivered {stats.get('delivered')}, failed attempts "
                     f"{stats.get('failed_attempts')}, dropped {stats.get('dropped')}, pending {stats.get('pending')}"
                     + (f", last error: {stats['last_error']}" if stats.get("last_error") else ""))
    return Group(*lines)


@main.command()
@click.argument("model")
@click.option("--version", "model_version", help="One version (default: every version of the model).")
@click.option("--last", type=int, help="Only the newest N windows of each version.")
@click.option("--json", "as_json", is_flag=True, help="Print the window summaries as JSON.")
@click.pass_context
def history(ctx, model: str, model_version, last, as_json: bool) -> None:
    """Every tested window of a model, oldest first (from Redis; kept: `history_windows` per version)."""
    from sinks import StoreUnavailable
    from sinks.history import UnknownModel, read_history_sync

    try:
        found = read_history_sync(_settings(ctx).redis_url, model, model_version, last=last)
    except (UnknownModel, StoreUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
        return
    for version, windows in found.items():
        if not windows:
            console.print(f"{model} v{version}: no window tested yet")
            continue
        table = Table("window", "end (UTC)", "n", "drifted", "min p-value", "metrics", "CBPE estimate", "alerts",
                      title=f"{model} v{version}: {len(windows)} windows")
        for w in windows:
            p_values = [f["p_value"] for f in w.get("features", {}).values() if f.get("p_value") is not None]
            metrics = ", ".join(f"{k}={v:.3f}" for k, v in (w.get("metrics") or {}).items() if v is not None)
            estimate = (w.get("estimate") or {}).get("accuracy")
            table.add_row(str(w["index"]), _utc(w.get("end")), str(w.get("n")),
                          ", ".join(w.get("drifted_features") or []) or "-",
                          f"{min(p_values):.3g}" if p_values else "-", metrics or "-",
                          f"accuracy={estimate:.3f}" if estimate is not None else "-",
                          ", ".join(f"{a['kind']}:{a['severity']}" for a in w.get("alerts") or []) or "-")
        console.print(table)


@main.command()
@click.option("--port", default=8050, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.pass_context
def dashboard(ctx, port: int, host: str) -> None:
    """Serve the dashboard standalone, from Redis (for people who don't expose workers)."""
    import asyncio

    from aiohttp import web

    from streams.report import dashboard_response

    redis_url = _settings(ctx).redis_url

    async def page(request):
        code, html = await asyncio.to_thread(dashboard_response, redis_url, "/dashboard",
                                             request.match_info.get("model"), dict(request.query))
        return web.Response(text=html, status=code, content_type="text/html")

    application = web.Application()
    application.router.add_get("/", lambda request: web.HTTPFound("/dashboard"))
    application.router.add_get("/dashboard", page)
    application.router.add_get("/dashboard/{model}", page)
    console.print(f"dashboard on [bold]http://{host}:{port}/dashboard[/] (Ctrl-C stops it)")
    web.run_app(application, host=host, port=port, print=None)


@main.command()
@click.argument("model")
@click.option("--version", "model_version", help="One version (default: every version of the model).")
@click.option("--since", help="Start of the period: epoch seconds or ISO-8601 (event time of window ends).")
@click.option("--until", help="End of the period, as --since.")
@click.option("--feature", help="The feature whose histograms to draw (default: the latest drifted one).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@click.pass_context
def report(ctx, model, model_version, since, until, feature, out_path) -> None:
    """Write one self-contained HTML report of a model over a period (plots work offline)."""
    from sinks import StoreUnavailable
    from sinks.history import UnknownModel, read_history_sync
    from streams.records import parse_timestamp
    from streams.report import model_page

    try:
        period = tuple(None if v is None else parse_timestamp(_number_or_text(v), None) for v in (since, until))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        history = read_history_sync(_settings(ctx).redis_url, model, model_version, since=period[0], until=period[1])
    except (UnknownModel, StoreUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    Path(out_path).write_text(model_page(model, history, feature=feature, period=period), encoding="utf-8")
    windows = sum(len(w) for w in history.values())
    if windows:
        console.print(f"wrote {out_path}: {windows} windows of {model} ({', '.join(history)})")
    else:
        console.print(f"wrote {out_path}: no window of {model} closed in this period")


def _number_or_text(value: str):
    try:
        return float(value)
    except ValueError:
        return value


def _utc(ts) -> str:
    import datetime as dt

    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@main.command()
@click.argument("what", type=click.Choice(["alerts", "retrain", "deadletter"]))
@click.option("--from-beginning", is_flag=True)
@click.option("--max", "max_messages", type=int, help="Stop after this many messages.")
@click.option("--timeout", type=float, help="Stop after this many idle seconds.")
@click.pass_context
def tail(ctx, what: str, from_beginning: bool, max_messages, timeout) -> None:
    """Print alerts, retrain requests or dead letters as JSON lines."""
    from kafka import KafkaConsumer

    settings = _settings(ctx)
    consumer = KafkaConsumer(getattr(settings.topics, what), bootstrap_servers=bootstrap_of(settings.broker),
                             auto_offset_reset="earliest" if from_beginning else "latest",
                             enable_auto_commit=False, consumer_timeout_ms=int(timeout * 1000) if timeout else -1)
    n = 0
    try:
        for message in consumer:
            click.echo(message.value.decode("utf-8", "replace"))
            n += 1
            if max_messages and n >= max_messages:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()


@main.group()
def reference() -> None:
    """Reference profiles (what a model's inputs should look like)."""


@reference.command("build")
@click.option("--model", required=True)
@click.option("--version", "model_version", default="0", show_default=True)
@click.option("--label-column", default="label", show_default=True, help="Left out of the features.")
@click.option("--output", type=click.Path(dir_okay=False), help="Also write the profile as JSON here.")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def reference_build(ctx, model, model_version, label_column, output, path) -> None:
    """Build a reference profile from a CSV or JSONL file of feature rows and store it in Redis."""
    from detectors.profile import ReferenceProfile
    from sinks import put_reference_sync
    from streams.files import read_rows

    settings = _settings(ctx)
    columns = read_rows(Path(path), exclude={label_column, "prediction", "score", "prediction_id"})
    kinds = settings.for_model(model).feature_types
    reference_id = f"{model}:{model_version}:{Path(path).name}"
    profile = ReferenceProfile.from_columns(columns, kinds=kinds, reference_id=reference_id)
    data = profile.to_dict()
    put_reference_sync(settings.redis_url, model, model_version, data)
    if output:
        Path(output).write_bytes(orjson.dumps(data))
    console.print(f"stored reference [bold]{reference_id}[/]: {profile.n} rows, "
                  f"{len(profile.features)} features ({', '.join(f'{k}:{v}' for k, v in profile.kinds.items())})")


@main.command()
@click.argument("alert_id")
@click.option("--recompute", is_flag=True, help="Re-read the window's events from Kafka and rerun the tests.")
@click.pass_context
def audit(ctx, alert_id: str, recompute: bool) -> None:
    """Print the evidence behind one alert; with --recompute, check it against the events."""
    from streams import audit as audit_

    settings = _settings(ctx)
    alert = audit_.load_alert(settings.redis_url, alert_id)
    if alert is None:
        raise click.ClickException(f"no alert {alert_id} in Redis (alerts are kept for 30 days)")
    click.echo(orjson.dumps(alert, option=orjson.OPT_INDENT_2).decode())
    if not recompute:
        return
    from streams.progress import progress

    if alert["kind"] not in audit_.WINDOW_KINDS:
        raise click.ClickException(f"recomputing is for {', '.join(audit_.WINDOW_KINDS)} alerts, "
                                   f"not {alert['kind']}")
    with progress(console, "read", audit_.messages_to_read(alert)) as update:
        rows = audit_.recompute(settings, alert, progress=update)
    table = Table("feature", "detector", "statistic", "recomputed", "p-value", "recomputed", "match",
                  title=f"recomputed from {alert['window']['n']} events")
    for r in rows:
        table.add_row(r["feature"], r["detector"], f"{r['statistic']:.6g}", f"{r['recomputed_statistic']:.6g}",
                      f"{r['p_value']:.6g}", f"{r['recomputed_p_value']:.6g}", "yes" if r["match"] else "NO")
    console.print(table)
    if not all(r["match"] for r in rows):
        raise SystemExit(1)


# -- demo ----------------------------------------------------------------------------------
@main.command()
@click.option("--events", default=12_000, show_default=True)
@click.option("--shift-at", default=5_000, show_default=True)
@click.option("--concept-at", default=8_000, show_default=True)
@click.option("--batch", default=100, show_default=True)
@click.option("--timeout", default=100.0, show_default=True, help="Give up after this many seconds.")
@click.pass_context
def demo(ctx, events, shift_at, concept_at, batch, timeout) -> None:
    """Everything on this machine: broker, Redis, a worker, and traffic with injected drift."""
    from streams.demo import run_demo

    sys.exit(run_demo(console, events=events, shift_at=shift_at, concept_at=concept_at, batch=batch,
                      timeout=timeout))


if __name__ == "__main__":
    main()
