"""Every deployment in prefect.yaml names an importable flow whose parameters validate."""

import pytest

from rnnflow.ops.serve import import_flow, load_deployments, triggers_of

DEPLOYMENTS = load_deployments()


@pytest.mark.parametrize("spec", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_deployment_points_at_a_flow_with_valid_parameters(spec):
    flow = import_flow(spec["entrypoint"])
    params = flow.validate_parameters(spec.get("parameters", {}))
    assert set(params) <= set(flow.parameters.properties)
    if spec.get("triggers"):  # event-driven: what the trigger passes must be the flow's parameters
        for trigger in triggers_of(spec):
            assert set(trigger.parameters) <= set(flow.parameters.properties)
    else:
        assert spec["schedules"] and all("cron" in s for s in spec["schedules"])


def test_retrain_on_stale_is_triggered_by_the_monitors_event():
    from tasks.monitor import STALE_EVENT

    (spec,) = [d for d in DEPLOYMENTS if d["name"] == "retrain-on-stale"]
    (trigger,) = triggers_of(spec)
    assert trigger.expect == {STALE_EVENT} and trigger.enabled
    assert trigger.match.model_dump() == {"prefect.resource.id": "rnnflow.model.*"}


def test_a_bad_parameter_in_a_deployment_would_be_caught():
    flow = import_flow(DEPLOYMENTS[0]["entrypoint"])
    with pytest.raises(Exception, match="epochs"):
        flow.validate_parameters({"config": {"train": {"epochs": 0}}})
