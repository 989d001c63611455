"""A retrain trains the champion's network the way the champion reads its data: a champion
trained with other scaling or the linear term (an explicit flag, or a default of an older
release) is retrained warm and cold with them, whatever the retrain's own flags say."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from flows.train import train_flow
from rnnflow.cli import main
from tests.flows.test_warmstart import FLAGS, config, rows, running_runs, versions

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def test_retrain_reads_and_builds_as_the_champion_does(mlflow_store, tmp_path, capsys):
    path = rows(tmp_path, 120)
    base = config(path)
    cfg = base.model_copy(update={"data": base.data.model_copy(update={"normalize": "window"}),
                                  "model": base.model.model_copy(update={"autoregressive": True})})
    assert train_flow(cfg).version == "1"
    rows(tmp_path)  # new rows arrive
    assert main(["retrain", "--data", path, *FLAGS]) == 0, capsys.readouterr().err  # no --normalize, no --autoregressive
    client = MlflowClient()
    assert versions() == ["1", "2", "3"] and running_runs() == []
    for version in ("2", "3"):
        run = client.get_run(client.get_model_version("rnnflow", version).run_id)
        assert run.data.params["data_normalize"] == "window"
        assert run.data.params["autoregressive"] == "True"
