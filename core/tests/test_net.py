"""dlm_core.net: a bindable free port, and waiting for a server that answers, one that died, one that never
comes up."""

import http.server
import socket
import subprocess
import sys
import threading
import time

import pytest

from dlm_core.errors import DlmError
from dlm_core.net import free_port, wait_http_ready


class Ready(http.server.BaseHTTPRequestHandler):
    """/ready answers 200 from the third request on (a server warming up), everything else 404."""

    hits = 0

    def do_GET(self):
        if self.path == "/ready":
            Ready.hits += 1
            self.send_response(200 if Ready.hits >= 3 else 503)
        else:
            self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    Ready.hits = 0
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_free_port_is_bindable():
    port = free_port()
    assert 1024 <= port < 65536
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_wait_http_ready_waits_for_200(server):
    t0 = time.monotonic()
    wait_http_ready(f"{server}/ready", timeout=10)
    assert Ready.hits == 3 and time.monotonic() - t0 < 5  # two 503s, polled ~0.1 s apart


def test_wait_http_ready_times_out_with_one_line(server):
    t0 = time.monotonic()
    with pytest.raises(DlmError, match=r"/missing did not answer 200 within 0.5 s \(last: HTTP 404\)") as err:
        wait_http_ready(f"{server}/missing", timeout=0.5)
    assert "\n" not in str(err.value) and time.monotonic() - t0 < 3


def test_wait_http_ready_times_out_when_nothing_listens():
    with pytest.raises(DlmError, match="did not answer 200 within 0.3 s"):
        wait_http_ready(f"http://127.0.0.1:{free_port()}/v2/health/ready", timeout=0.3)


def test_wait_http_ready_fails_at_once_when_the_server_dies():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3); raise SystemExit(3)"])
    t0 = time.monotonic()
    with pytest.raises(DlmError, match="exited with code 3 before it was ready"):
        wait_http_ready(f"http://127.0.0.1:{free_port()}/v2/health/ready", timeout=60, proc=proc)
    assert time.monotonic() - t0 < 20  # not the 60 s timeout
    t0 = time.monotonic()
    with pytest.raises(DlmError, match="exited with code 3"):  # already dead: no polling at all
        wait_http_ready("http://127.0.0.1:1/", timeout=60, proc=proc)
    assert time.monotonic() - t0 < 0.5
