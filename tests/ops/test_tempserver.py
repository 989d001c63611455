"""The temporary server booted early is the API the flow runs use, this process never imports
Prefect's server code, and it is gone when the command ends; none boots when an API is
configured. Each case runs in a fresh interpreter: Prefect reads its settings at import, and
the test session's own Prefect harness must not be the server under test."""

import os
import re
import socket
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

BOOT_THEN_FLOW = """
import os, sys, urllib.request
from rnnflow.ops import tempserver

tempserver.start_early()
tempserver.start_early()  # a second call starts nothing more
url = os.environ["PREFECT_API_URL"]
tempserver.ready()
tempserver.ready()
with urllib.request.urlopen(url + "/health", timeout=10) as r:
    assert r.status == 200

from prefect import flow, get_client

@flow(name="hello")
def hello():
    from prefect.settings import get_current_settings

    # No heartbeats to a server that goes with this process (their thread's join cost ~1 s).
    assert get_current_settings().flows.heartbeat_frequency is None
    return "ran"

assert hello() == "ran"
with get_client(sync_client=True) as client:
    assert str(client.api_url).rstrip("/") == url, client.api_url
    names = [client.read_flow(fr.flow_id).name for fr in client.read_flow_runs()]
assert names == ["hello"], names
assert "prefect.server.api.server" not in sys.modules, "the command imported Prefect's server code"
print("ONE SERVER", url)
"""

CONFIGURED = """
import os
from rnnflow.ops import tempserver

tempserver.start_early()
tempserver.ready()
assert tempserver._server is None, "started a server although PREFECT_API_URL is set"
assert os.environ["PREFECT_API_URL"] == "http://127.0.0.1:9/api"
print("NO SERVER")
"""


FAILED_CHECK = """
import os, socket
from rnnflow.cli import main
from rnnflow.ops import tempserver

# The store is checked after the server was booted: the command stops before any work.
assert main(["train", "--preset", "tutorial", "--epochs", "1"]) == 2
assert tempserver._api_url, "no server was booted before the check"
assert tempserver._server is None and "PREFECT_API_URL" not in os.environ and "PREFECT_UI_URL" not in os.environ
from prefect.settings import get_current_settings

assert not get_current_settings().api.url, get_current_settings().api.url
port = int(tempserver._api_url.rsplit(":", 1)[1].split("/")[0])
with socket.socket() as s:
    assert s.connect_ex(("127.0.0.1", port)) != 0, "the unused server still listens"
print("DISCARDED")
"""


def _python(code: str, tmp_path, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                          env={**clean, "PREFECT_HOME": str(tmp_path / "prefect-home"), **env})


def test_the_flow_run_uses_the_server_booted_early_and_it_stops_at_exit(tmp_path):
    done = _python(BOOT_THEN_FLOW, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    port = int(re.search(r"ONE SERVER http://127.0.0.1:(\d+)/api", done.stdout).group(1))
    # One line says where it is, and that it stops with the command (once: ready() twice).
    assert done.stderr.count(f"rnnflow: started a temporary Prefect server on http://127.0.0.1:{port}") == 1
    assert "Starting temporary server" not in done.stderr  # Prefect did not start one of its own
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the temporary server outlived the command"


def test_no_server_boots_when_an_api_is_configured(tmp_path):
    # Nothing needs to listen: start_early must not even ask.
    done = _python(CONFIGURED, tmp_path, PREFECT_API_URL="http://127.0.0.1:9/api")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "NO SERVER" in done.stdout


def test_a_command_that_fails_a_check_after_booting_leaves_no_server_and_no_settings(tmp_path):
    done = _python(FAILED_CHECK, tmp_path, MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "DISCARDED" in done.stdout
    assert "tracking" in done.stderr and "started a temporary Prefect server" not in done.stderr
