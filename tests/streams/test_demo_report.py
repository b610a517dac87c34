"""`make demo` writes the demo model's report: it reads the history under the demo's app id."""
from __future__ import annotations

import io

from rich.console import Console

from sinks import write_status_sync
from streams.demo import APP_ID, _write_report


def test_the_demo_report_is_written_from_the_demo_app_ids_keys(redis_client, redis_url, tmp_path):
    write_status_sync(redis_url, "phishing", "v1", {"counts": {"predictions": 1}}, prefix=APP_ID)
    out = io.StringIO()
    _write_report(Console(file=out, width=200), redis_url, "phishing", tmp_path / "report.html")
    assert "report not written" not in out.getvalue(), out.getvalue()
    assert "phishing" in (tmp_path / "report.html").read_text()
