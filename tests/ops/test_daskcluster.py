"""The local cluster a tuning command starts early: its workers have a trial's imports done
before the first trial, the flow connects to it, and it is closed in the background and at
exit. In a fresh interpreter: Dask's spawned workers re-import the main module."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

EARLY = """
import os, sys, time
from distributed import Client
from rnnflow.ops import daskcluster

def main():
    assert daskcluster.address() is None  # none started
    daskcluster.start_early(2)
    daskcluster.start_early(2)  # a second call starts nothing more
    first = daskcluster.address()
    with Client(first) as client:
        loaded = client.run(lambda: [m in sys.modules for m in daskcluster.PRELOAD])
        pids = set(client.run(os.getpid).values())
    assert len(loaded) == 2 and all(all(v) for v in loaded.values()), loaded
    daskcluster.close_soon()
    assert daskcluster.address() is None
    daskcluster.start_early(1)  # after a close, a new cluster
    second = daskcluster.address()
    assert second != first
    with Client(second) as client:
        pids |= set(client.run(os.getpid).values())
    print("PIDS", *pids)  # the second cluster is left for the exit to close

if __name__ == "__main__":
    main()
"""


def test_workers_start_with_a_trials_imports_and_every_cluster_is_gone_at_exit(tmp_path):
    script = tmp_path / "early.py"
    script.write_text(EARLY)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    pids = [int(p) for p in done.stdout.split("PIDS", 1)[1].split()]
    assert len(pids) == 3
    for pid in pids:  # both clusters' workers are gone
        assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0, pid
