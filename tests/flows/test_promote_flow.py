"""Gated promotion through the flows: evidence, records, rollback, and a registry left intact."""

import subprocess
import sys

import pytest
from mlflow import MlflowClient

import flows.promote
import tasks.promote
from flows.train import train_flow
from rnnflow.cli import main
from rnnflow import tracking
from rnnflow.tracking import promotion
from rnnflow.tracking.registry import CHALLENGER, CHAMPION, PREVIOUS, TAG, snapshot_aliases
from tests.conftest import tiny_config
from tests.tracking.test_promotion import FaultyClient

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

ONE = {"model": {"variants": ["rnn"]}}


def train(epochs: int, window: int = 12):
    return train_flow(tiny_config(data={"window": window}, train={"epochs": epochs}, **ONE))


def aliases():
    return snapshot_aliases(MlflowClient(), "rnnflow")


def test_worse_challenger_keeps_the_champion_and_says_why(mlflow_store):
    first = train(8)
    assert first.decision.promote and aliases() == {CHAMPION: "1", CHALLENGER: "1"}
    second = train(1)
    assert not second.decision.promote
    assert aliases() == {CHAMPION: "1", CHALLENGER: "2"}
    tags = MlflowClient().get_model_version("rnnflow", "2").tags
    assert tags[TAG + "decision"] == "keep"
    assert float(tags[TAG + "champion_score"]) < float(tags[TAG + "challenger_score"])
    assert tags[TAG + "holdout_digest"] == tags["holdout_digest"]
    assert tags[TAG + "prefect_flow_run_id"]


def test_better_challenger_is_promoted_and_rollback_restores(mlflow_store, capsys):
    train(1)
    second = train(8, window=16)  # the champion is scored on 16-step windows it never saw
    assert second.decision.promote and second.decision.margin > 0
    assert aliases() == {CHAMPION: "2", CHALLENGER: "2", PREVIOUS: "1"}
    assert main(["promote", "--rollback"]) == 0
    assert aliases() == {CHAMPION: "1", CHALLENGER: "2"}
    assert "champion is version 1 again" in capsys.readouterr().out
    assert main(["promote", "--rollback"]) == 2  # not a toggle
    assert "no 'previous-champion' alias" in capsys.readouterr().err


def test_the_gate_is_the_configured_margin(mlflow_store, capsys):
    train(1)
    train_flow(tiny_config(train={"epochs": 8}, tracking={"min_improvement": 0.99}, **ONE))
    assert aliases()[CHAMPION] == "1"
    # the same pair, a lower bar; without --flow, plain registry calls: Prefect is never imported
    promote = ("import sys; from rnnflow.cli import main; code = main(['promote', '--min-improvement', "
               "'0.01']); assert 'prefect' not in sys.modules, 'prefect was imported'; sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", promote], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("rnnflow promote: promoted: ")
    assert aliases() == {CHAMPION: "2", CHALLENGER: "2", PREVIOUS: "1"}
    assert MlflowClient().get_model_version("rnnflow", "2").tags[TAG + "decision"] == "promote"


def test_plain_promote_leaves_the_registry_as_it_was_when_an_alias_write_fails(mlflow_store, monkeypatch):
    train(1)
    train_flow(tiny_config(train={"epochs": 8}, tracking={"min_improvement": 0.99}, **ONE))
    before = aliases()
    tags_before = [MlflowClient().get_model_version("rnnflow", v).tags for v in ("1", "2")]
    # the plain path takes its client from the backend directly (promotion.tracking_client)
    monkeypatch.setattr(promotion, "tracking_client", lambda: FaultyClient(
        mlflow_store, method="set_registered_model_alias", fail_on=2))
    with pytest.raises(Exception, match="injected failure on call 2"):
        promotion.promote("rnnflow", 0.0, "rmse")
    assert aliases() == before
    assert [MlflowClient().get_model_version("rnnflow", v).tags for v in ("1", "2")] == tags_before


def test_a_failed_alias_write_leaves_the_registry_as_it_was(mlflow_store, monkeypatch):
    train(1)
    tracking_uri = mlflow_store
    train_flow(tiny_config(train={"epochs": 8}, tracking={"min_improvement": 0.99}, **ONE))
    before = aliases()
    faulty = FaultyClient(tracking_uri, method="set_registered_model_alias", fail_on=2)
    monkeypatch.setattr(tracking, "client", lambda: faulty)
    state = flows.promote.promote_flow("rnnflow", 0.0, "rmse", return_state=True)
    assert state.is_failed() and "injected failure on call 2" in str(state.result(raise_on_failure=False))
    assert aliases() == before


def test_a_failure_after_the_alias_moved_rolls_the_transaction_back(mlflow_store, monkeypatch):
    train(1)
    train_flow(tiny_config(train={"epochs": 8}, tracking={"min_improvement": 0.99}, **ONE))
    before = aliases()

    def broken_artifact(**_):
        assert aliases()[CHAMPION] == "2", "the alias had moved when the next step failed"
        raise RuntimeError("artifact store unavailable")

    tags_before = [MlflowClient().get_model_version("rnnflow", v).tags for v in ("1", "2")]
    monkeypatch.setattr(tasks.promote, "create_markdown_artifact", broken_artifact)
    state = flows.promote.promote_flow("rnnflow", 0.0, "rmse", return_state=True)
    assert state.is_failed()
    assert aliases() == before
    # c03: no `promotion.decision=promote` is left behind on a version that was not promoted
    assert [MlflowClient().get_model_version("rnnflow", v).tags for v in ("1", "2")] == tags_before


def test_promote_without_a_challenger_or_holdout(mlflow_store, capsys):
    assert main(["promote", "--model-name", "ghost"]) == 2
    assert "no registered model 'ghost'" in capsys.readouterr().err
