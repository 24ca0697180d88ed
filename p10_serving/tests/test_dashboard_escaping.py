"""The dashboard writes what the server sends (model names, versions, event reasons and errors: text that a retrain
command's output or a bundle's manifest can carry) as text, never as HTML (issue #31): statically, no innerHTML in
the page; in headless Chromium, a page fed markup by a stand-in data endpoint shows it as text and runs none of
it. Chromium comes from Debian (`make test` installs it); where it is missing, the browser half is skipped."""

import http.server
import json
import re
import threading
import urllib.parse
from pathlib import Path

import pytest

from p10_serving.dashboard import STATIC
from p10_serving.tools.chromium import find_chromium, run_chromium

EVIL = "<img src=x onerror=\"document.title='pwned'\">"


def test_the_page_never_writes_html_from_data():
    page = (STATIC / "dashboard.html").read_text()
    assert "innerHTML" not in page and "outerHTML" not in page and "insertAdjacentHTML" not in page
    assert "document.write" not in page


def evil_data(since: float) -> dict:
    """What /v1/dashboard/data answers, newer than `since`, with markup in every string a server could send."""
    point = {"t": 1_700_000_000.0, "version": EVIL, "rps": 1.0, "errors": 0.0, "p50": 1.0, "p99": 2.0,
             "batch": 1.0, "drift_verdict": EVIL}
    events = [{"time": 1_700_000_000.0, "kind": EVIL, "model": EVIL, "version": EVIL, "reason": EVIL, "error": EVIL}]
    return {"now": 1_700_000_001.0, "interval_s": 1.0, "alert_p": 0.001, "psi_alert": 0.25,
            "models": {EVIL: [point] if since < point["t"] else []},
            "events": [e for e in events if e["time"] > since]}


@pytest.fixture
def evil_server():
    """The page and its static files as the server serves them, and /v1/dashboard/data full of markup."""
    files = {"/dashboard": ("dashboard.html", "text/html"), "/static/uPlot.iife.min.js": ("uPlot.iife.min.js",
             "text/javascript"), "/static/uPlot.min.css": ("uPlot.min.css", "text/css")}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            path, _, query = self.path.partition("?")
            if path == "/v1/dashboard/data":
                since = float(urllib.parse.parse_qs(query).get("since", ["0"])[0])
                body, kind = json.dumps(evil_data(since)).encode(), "application/json"
            elif path in files:
                name, kind = files[path]
                body = (STATIC / name).read_bytes()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(10)


@pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed (make test installs Debian's chromium)")
def test_markup_in_names_and_events_is_shown_as_text(evil_server, tmp_path: Path):
    html = run_chromium(f"{evil_server}/dashboard", tmp_path / "profile", "--dump-dom", budget_ms=3000).stdout
    assert "<title>dlm serving: live</title>" in html, html[:300]  # no script from the data ran
    assert "<img" not in html  # no element made from the data
    state = re.search(r'<pre id="dash-state"[^>]*>(.*?)</pre>', html, re.S)
    assert state and json.loads(state.group(1))["events"] == 1, html[:2000]  # the page did run on the data
    events = re.search(r'<div id="events">(.*?)</div>\s*<pre', html, re.S).group(1)
    escaped = EVIL.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert events.count(escaped) == 5, events  # kind, model, version, reason, error: all as text
    assert f"<h2>{escaped} " in html and f"version {escaped} · drift" in html
