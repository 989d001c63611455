"""Every deployment in prefect.yaml names an importable flow whose parameters validate."""

import pytest

from rnnflow.ops.serve import import_flow, load_deployments

DEPLOYMENTS = load_deployments()


@pytest.mark.parametrize("spec", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_deployment_points_at_a_flow_with_valid_parameters(spec):
    flow = import_flow(spec["entrypoint"])
    params = flow.validate_parameters(spec.get("parameters", {}))
    assert set(params) <= set(flow.parameters.properties)
    assert spec["schedules"] and all("cron" in s for s in spec["schedules"])


def test_a_bad_parameter_in_a_deployment_would_be_caught():
    flow = import_flow(DEPLOYMENTS[0]["entrypoint"])
    with pytest.raises(Exception, match="epochs"):
        flow.validate_parameters({"config": {"train": {"epochs": 0}}})
