"""The temporary server booted early is the one the flow run then uses, and none boots when an
API is configured. Each case runs in a fresh interpreter: Prefect reads its settings at import,
and the test session's own Prefect harness must not be the server under test."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

BOOT_THEN_FLOW = """
import urllib.request
from prefect import flow
from prefect.server.api.server import SubprocessASGIServer
from rnnflow.ops import tempserver

tempserver.start_early()
tempserver.start_early()  # a second call starts nothing more
tempserver.ready()
server = SubprocessASGIServer()
assert server.running and server.server_process is not None, "no temporary server booted"
with urllib.request.urlopen(server.api_url + "/health", timeout=10) as r:
    assert r.status == 200
pid = server.server_process.pid

@flow
def hello():
    return "ran"

assert hello() == "ran"
assert list(SubprocessASGIServer._instances) == [None] and server.server_process.pid == pid, \\
    "the flow run started a second server"
print("ONE SERVER", server.port)
"""

CONFIGURED = """
import threading
from rnnflow.ops import tempserver

tempserver.start_early()
tempserver.ready()
assert tempserver._boot is None, "booted a server although PREFECT_API_URL is set"
assert not any(t.name == "prefect-temporary-server" for t in threading.enumerate())
print("NO SERVER")
"""


def _python(code: str, tmp_path, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                          env={**clean, "PREFECT_HOME": str(tmp_path / "prefect-home"), **env})


def test_the_flow_run_uses_the_server_booted_early(tmp_path):
    done = _python(BOOT_THEN_FLOW, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ONE SERVER" in done.stdout
    # Prefect's own line says where it is, once, as when a flow run starts the server.
    assert done.stdout.count("Starting temporary server on") + done.stderr.count("Starting temporary server on") == 1


def test_no_server_boots_when_an_api_is_configured(tmp_path):
    # Nothing needs to listen: start_early must not even ask.
    done = _python(CONFIGURED, tmp_path, PREFECT_API_URL="http://127.0.0.1:9/api")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "NO SERVER" in done.stdout
