"""Promotion gate and alias moves against a real temporary SQLite model registry."""

from __future__ import annotations

import math

import pytest
from mlflow import MlflowClient

from rnnflow.tracking.registry import (
    CHALLENGER, CHAMPION, PREVIOUS, TAG, Decision, apply_promotion, challenger_version, decide,
    restore_aliases, rollback, snapshot_aliases,
)

RECORD = {"data_digest": "abc123", "flow_run_id": "run-42", "metric": "rmse"}


class FaultyClient(MlflowClient):
    """A real client whose Nth call of one alias method raises: fault injection, not a mock."""

    def __init__(self, *args, method: str, fail_on: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.method, self.fail_on, self.calls = method, fail_on, 0
        setattr(self, method, self._maybe_fail(getattr(super(), method)))

    def _maybe_fail(self, real):
        def wrapper(*args, **kwargs):
            self.calls += 1
            if self.calls == self.fail_on:
                raise ConnectionError(f"injected failure on call {self.calls} of {self.method}")
            return real(*args, **kwargs)
        return wrapper


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module: creating its tables takes seconds, a model does not."""
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    source = root / "model"
    source.mkdir()
    (source / "MLmodel").write_text("flavors: {}\n")  # the registry only records the URI
    return uri, source.as_uri()


@pytest.fixture
def client(store):
    uri, _ = store
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture
def model(request, client, store):
    """A fresh registered model with three versions and no aliases; returns its name."""
    name = request.node.name.replace("[", "-").replace("]", "")
    client.create_registered_model(name)
    for _ in range(3):
        client.create_model_version(name, source=store[1])
    return name


def _aliases(client, name, **aliases):
    for alias, version in aliases.items():
        client.set_registered_model_alias(name, alias.replace("_", "-"), str(version))
    return snapshot_aliases(client, name)


def _tags(client, name, version):
    return {k.removeprefix(TAG): v for k, v in client.get_model_version(name, str(version)).tags.items()
            if k.startswith(TAG)}


@pytest.mark.parametrize("champion, challenger, min_improvement, promote", [
    (None, 5.0, 0.05, True),        # no champion yet
    (1.0, 0.90, 0.05, True),        # 10 % better clears a 5 % bar
    (1.0, 0.97, 0.05, False),       # 3 % better does not
    (1.0, 0.75, 0.25, True),        # exactly on the bar promotes
    (1.0, 1.0, 0.0, False),         # a tie keeps the champion, even with no margin required
    (1.0, 1.2, 0.0, False),         # worse never promotes
    (1.0, math.nan, 0.0, False),    # a diverged challenger never promotes
    (None, math.inf, 0.0, False),
    (math.nan, 1.0, 0.05, True),    # a champion with no usable score is beaten by any finite one
])
def test_decide(champion, challenger, min_improvement, promote):
    decision = decide(champion, challenger, min_improvement)
    assert decision.promote is promote and decision.reason


def test_decide_reports_relative_margin_and_checks_min_improvement():
    assert decide(2.0, 1.5, 0.1).margin == pytest.approx(0.25)
    assert decide(None, 1.5, 0.1).margin is None
    with pytest.raises(ValueError, match="min_improvement"):
        decide(1.0, 0.5, 1.5)


def test_worse_challenger_keeps_champion_and_records_the_decision(client, model):
    before = _aliases(client, model, champion=1, challenger=2)
    decision = decide(1.0, 1.2, 0.01)
    apply_promotion(client, model, "2", decision, RECORD)

    assert snapshot_aliases(client, model) == before
    tags = _tags(client, model, 2)
    assert tags["decision"] == "keep" and tags["champion_version"] == "1"
    assert float(tags["challenger_score"]) == 1.2 and float(tags["champion_score"]) == 1.0
    assert float(tags["margin"]) == pytest.approx(-0.2) and float(tags["min_improvement"]) == 0.01
    assert (tags["data_digest"], tags["flow_run_id"], tags["metric"]) == ("abc123", "run-42", "rmse")
    assert tags["reason"] == decision.reason
    assert _tags(client, model, 1) == {"last_challenger": "2", "last_outcome": "kept"}


def test_better_challenger_becomes_champion_and_old_one_previous(client, model):
    _aliases(client, model, champion=1, challenger=2)
    apply_promotion(client, model, "2", decide(1.0, 0.5, 0.01), RECORD)

    assert snapshot_aliases(client, model) == {CHAMPION: "2", CHALLENGER: "2", PREVIOUS: "1"}
    assert _tags(client, model, 2)["decision"] == "promote"
    assert _tags(client, model, 1)["last_outcome"] == "replaced"


def test_first_promotion_sets_champion_only(client, model):
    _aliases(client, model, challenger=1)
    apply_promotion(client, model, challenger_version(client, model), decide(None, 0.5, 0.01), {})

    assert snapshot_aliases(client, model) == {CHAMPION: "1", CHALLENGER: "1"}
    assert "champion_score" not in _tags(client, model, 1)  # absent facts are not written as "None"


def test_challenger_that_already_is_champion_moves_nothing(client, model):
    before = _aliases(client, model, champion=2, challenger=2, previous_champion=1)
    apply_promotion(client, model, "2", decide(None, 0.5, 0.0), {})
    assert snapshot_aliases(client, model) == before


def test_rollback_restores_previous_champion_once(client, model):
    _aliases(client, model, champion=1, challenger=2)
    apply_promotion(client, model, "2", decide(1.0, 0.5, 0.01), RECORD)

    assert rollback(client, model) == "1"
    assert snapshot_aliases(client, model) == {CHAMPION: "1", CHALLENGER: "2"}
    assert "rolled_back" in _tags(client, model, 2)
    with pytest.raises(ValueError, match=f"{model}.*{PREVIOUS}"):
        rollback(client, model)  # not a toggle: the bad version does not come back


@pytest.mark.parametrize("start", [
    {"champion": 1, "challenger": 2},                          # previous-champion must vanish again
    {"previous_champion": 1, "champion": 2, "challenger": 3},  # and must point back at 1
])
def test_failure_on_second_alias_write_leaves_every_alias_as_before(store, client, model, start):
    before = _aliases(client, model, **start)
    faulty = FaultyClient(tracking_uri=store[0], registry_uri=store[0],
                          method="set_registered_model_alias", fail_on=2)
    with pytest.raises(ConnectionError, match="injected"):
        apply_promotion(faulty, model, before[CHALLENGER], decide(1.0, 0.5, 0.0), RECORD)

    assert faulty.calls >= 2  # the first write went through before the failure
    assert snapshot_aliases(client, model) == before


def test_failed_rollback_keeps_the_champion(store, client, model):
    before = _aliases(client, model, previous_champion=1, champion=2, challenger=2)
    faulty = FaultyClient(tracking_uri=store[0], registry_uri=store[0],
                          method="delete_registered_model_alias", fail_on=1)
    with pytest.raises(ConnectionError):
        rollback(faulty, model)
    assert snapshot_aliases(client, model) == before


def test_restore_aliases_undoes_changes_and_additions(client, model):
    before = _aliases(client, model, champion=1, challenger=2)
    _aliases(client, model, champion=3, previous_champion=1)
    restore_aliases(client, model, before)
    assert snapshot_aliases(client, model) == before


def test_unknown_model_is_a_value_error_listing_the_models(client, model):
    for call in (lambda: snapshot_aliases(client, "nope"), lambda: rollback(client, "nope"),
                 lambda: apply_promotion(client, "nope", "1", decide(None, 1.0, 0.0), {})):
        with pytest.raises(ValueError, match=f"'nope'.*{model}"):
            call()


def test_unknown_version_and_missing_challenger_are_value_errors(client, model):
    with pytest.raises(ValueError, match=f"{model}.*'9'"):
        apply_promotion(client, model, "9", decide(None, 1.0, 0.0), {})
    _aliases(client, model, champion=1)
    with pytest.raises(ValueError, match=f"{model}.*{CHALLENGER}.*champion=v1"):
        challenger_version(client, model)


def test_decision_is_a_plain_record():
    d = Decision(True, "r", 0.1, 0.9, 1.0, 0.05)
    assert (d.promote, d.reason, d.margin) == (True, "r", 0.1)
