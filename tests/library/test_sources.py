"""The table of sources: a file that grows, a folder or glob of daily drops, SQL tables and
queries (SQLite, PostgreSQL); an unreachable source is one line before any run; a URL's
password reaches no store."""

from __future__ import annotations

import json
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy
from mlflow import MlflowClient

from rnnflow.cli import main
from rnnflow.config import ConfigError, DataConfig, load_config
from rnnflow.data import DataError
from rnnflow.dataset import load_dataset, source_of
from rnnflow.sources import PASSWORD_ENV, SOURCES, describe, load_rows, query_hash, source_for, source_table
from tests.conftest import tiny_config

SMALL = ["--target", "value", "--time-column", "date", "--window", "12", "--epochs", "2",
         "--hidden-size", "4", "--batch-size", "16", "--variants", "rnn"]


@pytest.fixture(autouse=True)
def _no_password_left(monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "unset")  # restored to absent after each test
    monkeypatch.delenv(PASSWORD_ENV)


def series(start: str, n: int, value: float | None = None, seed: int = 0) -> pd.DataFrame:
    t = np.arange(n)
    noise = np.random.default_rng(seed).normal(0, 0.1, n)
    values = np.full(n, value) if value is not None else 10 + np.sin(2 * np.pi * t / 7) + noise
    return pd.DataFrame({"date": pd.date_range(start, periods=n, freq="D").strftime("%Y-%m-%d"), "value": values})


def test_the_config_offers_the_table_and_a_name_the_table_lacks_fails_loudly():
    assert typing.get_args(DataConfig.model_fields["source"].annotation) == tuple(SOURCES)
    with pytest.raises(ConfigError, match="data.source: Input should be 'random', .*'sql', 'files' or 'file'"):
        load_config(overrides={"data": {"source": "csv"}})
    stray = DataConfig.model_construct(**{**DataConfig().model_dump(), "source": "csv"})  # past the check
    with pytest.raises(DataError, match="^source 'csv' is not in the table of sources; known: random, sine"):
        source_table(stray)
    assert DataConfig(source="smoothing").per_step and not DataConfig(source="panel").per_step


def test_a_data_value_names_its_source(tmp_path):
    (tmp_path / "drops").mkdir()
    assert [source_for(p) for p in (str(tmp_path / "a.csv"), str(tmp_path / "drops"), str(tmp_path / "d*.csv"),
                                    "sqlite:////x.db", "postgresql+psycopg://u:***@h:5432/db")] == [
        "file", "files", "files", "sql", "sql"]
    with pytest.raises(ConfigError, match="an SQL source needs --table NAME or --query"):
        load_config(overrides={"data": {"path": "sqlite:////x.db", "target": ["value"]}})
    with pytest.raises(ConfigError, match="--table is read with an SQL URL as --data, not with source 'file'"):
        load_config(overrides={"data": {"path": "a.csv", "target": ["value"], "table": "t"}})


def test_a_glob_of_daily_drops_is_read_in_time_order_and_a_shared_stamp_is_one_line(tmp_path, capsys):
    drops = tmp_path / "drops"
    drops.mkdir()
    # Named against time order: the later drop sorts first by name. 2024-01-11 is in both.
    series("2024-01-01", 11, 1.0).to_csv(drops / "z-first.csv", index=False)
    series("2024-01-11", 10, 2.0).to_csv(drops / "a-second.csv", index=False)
    glob = str(drops / "*.csv")
    assert main(["train", "--data", glob, *SMALL, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and (f"time stamp 2024-01-11 is in {drops / 'z-first.csv'} and "
                                     f"{drops / 'a-second.csv'}") in err and "--duplicates last or first" in err
    for keep, value in (("last", 2.0), ("first", 1.0)):
        cfg = tiny_config(data={"path": glob, "target": ["value"], "time_column": "date", "window": 4,
                                "duplicates": keep})
        frame = load_dataset(cfg.data, source_of(cfg)).frame
        assert len(frame) == 20 and frame["date"].is_monotonic_increasing
        assert frame.set_index("date").loc["2024-01-11", "value"] == value
    assert main(["train", "--data", str(drops), *SMALL, "--duplicates", "last", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["duplicates"] == "last"  # logged with the params


def test_sql_sources_read_a_table_or_a_query_and_the_rows_after_a_stamp(tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    rows = series("2024-01-01", 40)
    rows.to_sql("sales", sqlalchemy.create_engine(url), index=False)
    table = tiny_config(data={"path": url, "table": "sales", "target": ["value"], "time_column": "date", "window": 7})
    ds = load_dataset(table.data, source_of(table))
    assert ds.source == f"{url}#table=sales" and ds.label == "sales"
    assert ds.rows == {"rows": 40, "first": "2024-01-01", "last": "2024-02-09"}
    np.testing.assert_allclose(ds.frame["value"], rows["value"])
    query = "SELECT date, value FROM sales WHERE date >= '2024-01-11'"
    cfg = table.data.model_copy(update={"table": None, "query": query})
    assert describe(cfg) == f"{url}#query={query_hash(query)}" and len(source_table(cfg)[0]) == 30
    new = load_rows(table.data, since="2024-02-05")
    assert list(new["date"]) == ["2024-02-06", "2024-02-07", "2024-02-08", "2024-02-09"]


@pytest.mark.parametrize("data, where, expected", [
    ("{tmp}/none/*.csv", [], "{tmp}/none/*.csv: no .csv/.parquet/.pq files match"),
    ("sqlite:///{tmp}/shop.db", ["--table", "ghost"], "sqlite:///{tmp}/shop.db#table=ghost: no table 'ghost'"),
    ("postgresql+psycopg://ann:s3cret-pw@127.0.0.1:9/db", ["--table", "sales"],
     "postgresql+psycopg://ann:***@127.0.0.1:9/db#table=sales: cannot read it (connection failed"),
])
def test_an_unreachable_source_is_one_line_before_any_run(tmp_path, capsys, mlflow_store, data, where, expected):
    assert main(["train", "--data", data.format(tmp=tmp_path), *where, *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected.format(tmp=tmp_path) in err and "s3cret-pw" not in err
    assert not Path(mlflow_store.split("///", 1)[1]).exists()  # no store touched, so no run left RUNNING


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_growing_file_second_run_sees_the_new_rows(tmp_path, mlflow_store):
    from flows.train import train_flow

    path = tmp_path / "daily.csv"
    series("2024-01-01", 60).to_csv(path, index=False)
    cfg = tiny_config(data={"path": str(path), "target": ["value"], "time_column": "date", "window": 7},
                      model={"variants": ["rnn"]}, tracking={"register_best": False})
    first = train_flow(cfg)
    series("2024-01-01", 74).to_csv(path, index=False)  # two weeks of new rows
    second = train_flow(cfg)
    client = MlflowClient()
    params = [client.get_run(s.parent_run_id).data.params for s in (first, second)]
    assert [(p["data_rows"], p["data_first"], p["data_last"]) for p in params] == [
        ("60", "2024-01-01", "2024-02-29"), ("74", "2024-01-01", "2024-03-14")]
    inputs = [client.get_run(s.results["rnn"].run_id).inputs.dataset_inputs[0] for s in (first, second)]
    assert [{t.key: t.value for t in i.tags}["rnnflow.last"] for i in inputs] == ["2024-02-29", "2024-03-14"]
    assert inputs[0].dataset.digest != inputs[1].dataset.digest
    assert json.loads(inputs[1].dataset.source) == {"uri": str(path)}


def _prefect_database() -> Path:
    from prefect.settings import get_current_settings

    return Path(get_current_settings().server.database.connection_url.get_secret_value().split("///", 1)[1])


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_postgresql_table_trains_and_scores_and_its_password_reaches_no_store(
        postgres, tmp_path, mlflow_store, capsys):
    password = sqlalchemy.engine.make_url(postgres).password
    series("2024-01-01", 80).to_sql("sales", sqlalchemy.create_engine(postgres), index=False, if_exists="replace")
    assert main(["train", "--data", postgres, "--table", "sales", *SMALL, "--min-skill", "-100"]) == 0
    out = tmp_path / "preds.csv"
    assert main(["predict", "--data", postgres, "--table", "sales", "--out", str(out), "--flow"]) == 0
    assert pd.read_csv(out)["date"].iloc[-1].startswith("2024-03-21")  # one day past the last row
    assert main(["train", "--data", postgres.replace(password, "wrong-pw-1"), "--table", "sales", *SMALL]) == 2
    printed = capsys.readouterr()
    assert "password authentication failed" in printed.err and "wrong-pw-1" not in printed.err
    assert main(["predict", "--data", postgres, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs --table NAME or --query" in err and password not in err

    client = MlflowClient()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 2  # the parent and its one variant
    sql_inputs = [i.dataset for r in runs for i in r.inputs.dataset_inputs]
    assert {d.source_type for d in sql_inputs} == {"sql"} and json.loads(sql_inputs[0].source)["table"] == "sales"
    recorded = json.dumps([[r.data.params, r.data.tags, [(i.dataset.source, i.dataset.name, [t.value for t in i.tags])
                                                          for i in r.inputs.dataset_inputs]] for r in runs])
    versions = client.search_model_versions()
    recorded += json.dumps([[v.tags, v.description, v.source] for v in versions])
    assert "127.0.0.1" in recorded and "***" in recorded and password not in recorded
    stores = [Path(mlflow_store.split("///", 1)[1]), *(tmp_path / "mlartifacts").rglob("*"), _prefect_database()]
    assert stores[0].is_file() and stores[-1].is_file()
    held = {}
    for path in stores:  # every byte each store holds: params, tags, inputs, logs, flow parameters
        for part in (path, Path(f"{path}-wal")):
            if part.is_file():
                held[part] = part.read_bytes()
                assert password.encode() not in held[part], part
    masked = postgres.replace(password, "***").encode()
    assert any(masked in held[p] for p in held if p.name.startswith(stores[-1].name))  # the grep sees parameters

    from prefect import get_client

    with get_client(sync_client=True) as prefect:
        flow_runs = prefect.read_flow_runs()
        artifacts = prefect.read_artifacts()
    data_params = [r.parameters for r in flow_runs if r.parameters.get("data") or r.parameters.get("config")]
    assert data_params and "***" in json.dumps(data_params, default=str)
    assert password not in json.dumps([r.model_dump(mode="json") for r in flow_runs])
    assert password not in json.dumps([a.model_dump(mode="json") for a in artifacts])
