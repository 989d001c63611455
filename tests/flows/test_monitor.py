"""`rnnflow monitor` on a real SQLite store with a trained tiny model: a clean series and an
absorbed level shift stay fresh, a seasonal swing x3 is stale; nothing new; bad input."""

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from rnnflow.cli import main
from tests.conftest import tiny_config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

TRAIN_ROWS, NEW_ROWS, SEASON = 144, 72, 12


def series(change: str | None = None, n: int = TRAIN_ROWS + NEW_ROWS) -> pd.DataFrame:
    """A monthly seasonal series; ``change`` from one season into the new rows on."""
    t = np.arange(n)
    swing = 10 * np.sin(2 * np.pi * t / SEASON)
    level = 50 + np.random.default_rng(0).normal(0, 0.5, n)
    after = t >= TRAIN_ROWS + SEASON
    if change == "level":
        level = level + 20 * after  # window normalisation absorbs it one window later
    if change == "swing":
        swing = swing * np.where(after, 3.0, 1.0)  # it cannot absorb this
    return pd.DataFrame({"month": pd.date_range("2000-01-01", periods=n, freq="MS").strftime("%Y-%m-%d"),
                         "sales": level + swing})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A champion trained on the first TRAIN_ROWS rows, in a store of its own."""
    import mlflow

    from flows.train import train_flow

    tmp = tmp_path_factory.mktemp("monitor")
    with pytest.MonkeyPatch.context() as mp:
        uri = f"sqlite:///{tmp / 'mlflow.db'}"
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("RNNFLOW_ARTIFACT_ROOT", str(tmp / "mlartifacts"))
        mlflow.set_tracking_uri(uri)
        series(n=TRAIN_ROWS).to_csv(tmp / "history.csv", index=False)
        # The skill rule is left out in most checks (a tiny model's skill over seasonal naive on
        # a clean sine is a coin toss); the error-ratio rule is what tells these changes apart.
        # Scaled by the window's mean only, a scaled swing is a change the model cannot absorb
        # (window_std, the default, divides it away).
        cfg = tiny_config(data={"path": str(tmp / "history.csv"), "target": ["sales"], "time_column": "month",
                                "window": SEASON, "season_length": SEASON, "normalize": "window"},
                          model={"variants": ["rnn"]}, train={"epochs": 30}, tracking={"min_skill": -100})
        summary = train_flow(cfg)
        yield tmp, summary
        mlflow.set_tracking_uri(None)


def monitor(tmp, data, capsys, *flags):
    code = main(["monitor", "--model-uri", "models:/rnnflow@champion", "--data", str(data), *flags])
    out = capsys.readouterr()
    return code, out.out.strip().splitlines(), out.err.strip()


def monitoring_runs(client):
    exp = client.get_experiment_by_name("rnnflow")
    return client.search_runs([exp.experiment_id], "tags.`rnnflow.kind` = 'monitor'")


@pytest.mark.parametrize("change, verdict", [(None, "fresh"), ("level", "fresh"), ("swing", "stale")])
def test_monitor_calls_a_swing_stale_and_not_a_clean_series_or_a_level_shift(trained, capsys, change, verdict):
    tmp, summary = trained
    path = tmp / f"grown-{change}.csv"
    series(change).to_csv(path, index=False)
    code, lines, err = monitor(tmp, path, capsys, "--stale-skill", "-10")
    assert code == 0, err
    assert lines[-1].startswith(f"rnnflow monitor: rnnflow v{summary.version}: {verdict} ("), lines
    assert f"6 periods of {SEASON} steps since 2011-12-01" in lines[-1]  # 72 new rows, a season each
    client = MlflowClient()
    run = max(monitoring_runs(client), key=lambda r: r.info.start_time)
    assert run.info.status == "FINISHED" and run.data.tags["verdict"] == verdict
    assert run.data.tags["model_version"] == summary.version and run.data.tags["period_start.0"] == "2012-01-01"
    history = client.get_metric_history(run.info.run_id, "ratio")
    assert [m.step for m in history] == list(range(6))
    assert any(k.startswith("drift_ks.sales") for k in run.data.metrics)
    assert "monitor/realised_error.png" in [a.path for a in client.list_artifacts(run.info.run_id, "monitor")]
    ratios = [m.value for m in sorted(history, key=lambda m: m.step)]
    if change == "swing":  # the event links back to the run, and the run to the event
        assert min(ratios[1:]) > 1.5 and run.data.tags.get("stale_event_id")
        assert any("emitted rnnflow.model.stale event" in line for line in lines)
    else:
        assert "stale_event_id" not in run.data.tags
        assert max(ratios[2:]) < 1.5  # a level shift is gone one window (a season) after it


@pytest.mark.parametrize("kind", ["folder", "sqlite"])
def test_a_folder_of_daily_drops_or_a_table_is_watched_as_the_file_was(trained, capsys, kind):
    """The version was trained on a file; its continuation lands as files in a folder (one per
    drop) or rows in an SQL table, and is read by that source's reader: same verdict, same periods."""
    import sqlalchemy

    tmp, summary = trained
    grown = series("swing")
    if kind == "folder":
        (tmp / "drops").mkdir()
        for i, rows in enumerate(np.array_split(np.arange(len(grown)), 6)):
            grown.iloc[rows].to_csv(tmp / "drops" / f"part-{i}.csv", index=False)
        flags = ["--data", str(tmp / "drops")]
    else:
        url = f"sqlite:///{tmp / 'warehouse.db'}"
        grown.to_sql("sales", sqlalchemy.create_engine(url), index=False)
        flags = ["--data", url, "--table", "sales"]
    code = main(["monitor", "--model-uri", "models:/rnnflow@champion", *flags, "--stale-skill", "-10"])
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert code == 0, out.err
    assert lines[-1].startswith(f"rnnflow monitor: rnnflow v{summary.version}: stale ("), lines
    assert f"6 periods of {SEASON} steps since 2011-12-01" in lines[-1]
    if kind == "sqlite":  # the retrain the event asks for reads the same table
        run = max(monitoring_runs(MlflowClient()), key=lambda r: r.info.start_time)
        assert run.data.tags.get("stale_event_id")


def test_a_calendar_period_and_the_skill_rule(trained, capsys):
    tmp, summary = trained
    path = tmp / "grown-clean.csv"
    series().to_csv(path, index=False)
    code, lines, err = monitor(tmp, path, capsys, "--period", "Q", "--stale-skill", "0.99")
    assert code == 0, err  # no forecast has skill 0.99 over naive: every quarter is bad
    assert lines[-1].split(": ", 1)[1].startswith(f"rnnflow v{summary.version}: stale") and "periods of Q" in lines[-1]


def test_nothing_new_exits_0_without_a_run(trained, capsys):
    tmp, summary = trained
    before = len(monitoring_runs(MlflowClient()))
    code, lines, err = monitor(tmp, tmp / "history.csv", capsys)
    assert (code, lines[-1]) == (0, f"rnnflow monitor: rnnflow v{summary.version}: nothing new since 2011-12-01")
    assert len(monitoring_runs(MlflowClient())) == before


@pytest.mark.parametrize("flags, message", [
    (["--model-uri", "models:/nope@champion"], "model URI models:/nope@champion: no such registered version; registered models: rnnflow"),
    (["--model-uri", "runs:/abc/model"], "the monitor watches a registered version"),
    (["--data", "missing.csv"], "missing.csv: no such file"),
    (["--data", "wrong-columns"], "column 'sales'"),
    (["--period", "fortnight"], "period 'fortnight': not a pandas period alias"),
    (["--stale-ratio", "0.5"], "stale_ratio: Input should be greater than 1"),
])
def test_bad_model_uri_source_or_threshold_is_one_line_exit_2_and_no_run(trained, capsys, flags, message):
    tmp, _ = trained
    pd.DataFrame({"month": ["2020-01-01"], "other": [1.0]}).to_csv(tmp / "wrong-columns.csv", index=False)
    args = {"--model-uri": "models:/rnnflow@champion", "--data": str(tmp / "history.csv")}
    for flag, value in zip(flags[::2], flags[1::2]):
        args[flag] = str(tmp / f"{value}.csv") if flag == "--data" and value == "wrong-columns" else value
    client = MlflowClient()
    before = len(monitoring_runs(client))
    code = main(["monitor", *[x for kv in args.items() for x in kv]])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert err.startswith("rnnflow monitor: error: ")
    exp = client.get_experiment_by_name("rnnflow")
    assert not client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
    assert len(monitoring_runs(client)) == before


@pytest.mark.parametrize("times, since, new", [
    (pd.date_range("1949-01-01", periods=6, freq="MS"), pd.Timestamp("1949-04-01"), 2),
    (pd.date_range("2024-03-30", periods=4, freq="D", tz="Europe/Berlin"),
     pd.Timestamp("2024-03-31", tz="Europe/Berlin"), 2),
    (np.arange(1949.0, 1955.0), 1952.0, 2),
], ids=["dates", "zoned-dates", "decimal-years"])
def test_new_rows_start_after_the_trained_until_stamp(times, since, new):
    """The search for new rows takes dates (numpy's searchsorted could not compare datetime64
    with a Timestamp under pandas 2, so monitor crashed on date-stamped files there)."""
    from rnnflow.data import Columns
    from rnnflow.monitor import _new_ranges
    from rnnflow.preprocess import Preprocessor

    frame = pd.DataFrame({"t": times, "y": np.arange(len(times), dtype=float)})
    pre = Preprocessor(Columns(["y"], time="t"), window=2, horizon=1, stride=1, scaling="window",
                       missing="fail")
    (lo, hi), = _new_ranges(frame, pre, frame, since).values()
    assert (hi - lo, hi) == (new, len(times))
