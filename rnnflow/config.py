"""The one typed config for data, model, training and tracking.

Every parameter is defined here once, with its default, bounds and description. The CLI flags,
YAML files, Prefect flow parameters and ``prefect.yaml`` deployments are all read through it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# The allowed names come from the core's own tables: a new cell, loss or optimizer is added there.
from rnnmodel.engine import DEVICES, LOSSES, OPTIMIZERS
from rnnmodel.models import CELLS
from rnnflow.sources import SOURCES, hide_password, source_for

Preset = Literal["smoothing", "sine", "panel", "tutorial"]
Variant = Literal["rnn", "brnn"]
DIRECTIONS: dict[str, bool] = {"rnn": False, "brnn": True}  # variant -> bidirectional


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


Normalize = Literal["auto", "none", "global", "window", "window_std", "diff"]
# rnnflow/covariates.py computes each of these; kept here so the config needs no pandas import
CALENDAR = ("hour", "dayofweek", "dayofmonth", "dayofyear", "weekofyear", "month")


class DataConfig(Section):
    source: Literal[tuple(SOURCES)] = Field(
        "smoothing", description="random (the tutorial's noise), sine (forecast noisy sines), "
        "smoothing (denoise every step), panel (many trending series of different level and "
        "scale); set by --data: file (your CSV/Parquet), files (a folder or glob of them), "
        "sql (an SQLAlchemy URL with --table or --query)")
    path: str | None = Field(None, description="CSV or Parquet file, a folder or glob of them (read "
                             "in time order), or an SQLAlchemy URL (with --table or --query; a "
                             "password is kept in RNNFLOW_DATA_PASSWORD and shown as ***)",
                             json_schema_extra={"flag": "--data"})
    table: str | None = Field(None, description="SQL source: the table to read")
    query: str | None = Field(None, description="SQL source: the SELECT whose rows to read "
                              "(runs name it by its hash)")
    duplicates: Literal["fail", "last", "first"] = Field(
        "fail", description="Folder or glob: a time stamp in two files fails, or the later (last) "
        "or earlier (first) file's row wins")
    target: list[str] = Field([], description="Target column(s) of the file (repeatable)")
    unit: str | None = Field(None, description="Unit of the target(s), shown on the plots' value "
                             "axis, e.g. 'thousand passengers'")
    features: list[str] = Field([], description="Extra input columns (targets are inputs too)")
    time_column: str | None = Field(None, description="Column with the time stamps (dates, ISO text, "
                                    "YYYYMMDD integers, decimal years or step numbers)")
    time_format: str | None = Field(None, description="strftime format of a text time column, e.g. "
                                    "%d/%m/%Y (default: ISO 8601 and other unambiguous spellings)")
    freq: str | None = Field(None, description="Time step as a pandas offset alias (MS, ME, QS, D, "
                             "h ...) or a number; default: inferred from the time column")
    id_column: str | None = Field(None, description="Column naming the series of a long-format "
                                  "panel: one global model is trained across all of them")
    sort_time: bool = Field(False, description="Sort rows by the time column (else unsorted fails)")
    layout: Literal["long", "wide"] = Field(
        "long", description="long: one row per step; wide: one row per period (e.g. a year) with "
        "one column per step, melted row by row into one series")
    missing: Literal["fail", "interpolate", "ffill", "drop"] = Field(
        "fail", description="Missing values and missing periods: fail names the first one; "
        "interpolate or ffill fill them (in training and scoring alike); drop drops such rows")
    normalize: Normalize = Field(
        "auto", description="Input scaling: global (one scaler fitted on the training rows), window "
        "(each window minus its own mean, per column), window_std (also divided by its own std), "
        "diff (changes from the last value), none; auto: window_std to forecast (fewer false stale "
        "alarms, better-calibrated intervals, 4 of 8 shared files more accurate: benchmarks/RESULTS.md), "
        "global per step")
    stride: int | None = Field(None, gt=0, description="Rows between the starts of consecutive "
                               "windows (default: 1 to forecast, the window per step)")
    season_length: int | None = Field(None, gt=0, description="Season for the seasonal-naive baseline")
    calendar: list[str] = Field(["none"], description="Calendar features from the time axis, as "
                                "sin/cos pairs for the window and every forecast step: auto (what the "
                                "frequency makes meaningful), none, or names from " + ", ".join(CALENDAR))
    holidays: str | None = Field(None, description="Country code (ISO 3166, e.g. US, GB) whose public "
                                 "holidays are a 0/1 input for the window and every forecast step")
    future_features: list[str] = Field([], description="Input columns known ahead (a promotion plan, a "
                                       "price list): scoring files hold their values for the rows past "
                                       "the end, whose targets are blank")
    static_features: list[str] = Field([], description="Numeric columns constant within each series of "
                                       "a panel (--id-column): a store's size, a sensor's height; an input "
                                       "for every forecast step")
    window: int = Field(48, gt=0, description="Time steps per input window")
    horizon: int = Field(1, gt=0, description="Steps to forecast; per-step sources predict every step")
    n_series: int = Field(16, gt=0, description="Series to generate (generated sources)")
    length: int = Field(3072, gt=0, description="Rows per generated series")
    n_features: int = Field(1, gt=0, description="Input features per step (random source)")
    n_targets: int = Field(1, gt=0, description="Targets per step (random source)")
    noise: float = Field(0.3, ge=0, description="Standard deviation of the added noise")
    val_fraction: float = Field(0.15, ge=0, lt=1, description="Share of each series' rows for "
                                "validation (the rows just before the test rows)")
    test_fraction: float = Field(0.15, ge=0, lt=1, description="Share of each series' rows, its "
                                 "last, for the test set and the frozen holdout")
    data_seed: int = Field(0, ge=0, description="Seed of the data generator")

    @model_validator(mode="before")
    @classmethod
    def _data_source(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("path") and "source" not in values:
            values = {**values, "source": source_for(str(values["path"]))}
        return values

    @field_validator("path")
    @classmethod
    def _no_password(cls, path: str | None) -> str | None:
        # Before the config exists: nothing logged, tagged or passed on can hold the password.
        return path and hide_password(path)

    @field_validator("calendar")
    @classmethod
    def _calendar_names(cls, spec: list[str]) -> list[str]:
        if spec in (["auto"], ["none"]):
            return spec
        bad = [n for n in spec if n not in CALENDAR]
        if bad or not spec or len(set(spec)) < len(spec):
            raise ValueError(f"{(bad or spec or [''])[0]!r} is not allowed: give auto, none, or distinct names "
                             f"from {', '.join(CALENDAR)}")
        return spec

    @field_validator("holidays")
    @classmethod
    def _known_country(cls, code: str | None) -> str | None:
        import holidays  # imported here: the check is the only use of it at config time

        known = holidays.list_supported_countries()
        if code is not None and code not in known:
            raise ValueError(f"{code!r} is not a country code the holidays package knows "
                             f"(ISO 3166, e.g. US, GB, DE, FR; {len(known)} supported)")
        return code

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        if SOURCES[self.source].takes and not (self.path and self.target):
            raise ValueError(f"source {self.source!r} needs path (--data) and at least one target (--target COL)")
        if self.path and not SOURCES[self.source].takes:
            raise ValueError(f"path is only read with a source that reads --data, not {self.source!r}")
        if self.source == "sql" and bool(self.table) == bool(self.query):
            raise ValueError(f"an SQL source needs --table NAME or --query \"SELECT ...\" (one of them), "
                             f"got {'both' if self.table else 'neither'}")
        if self.source != "sql" and (self.table or self.query):
            raise ValueError(f"--{'table' if self.table else 'query'} is read with an SQL URL as --data, "
                             f"not with source {self.source!r}")
        if self.layout == "wide" and len(self.target) != 1:
            raise ValueError("layout 'wide' melts the file into one series: give exactly one target name")
        if self.per_step and self.normalize in ("window", "window_std", "diff"):
            raise ValueError(f"normalize {self.normalize!r} needs a forecasting task; source "
                             f"{self.source!r} predicts every step: use global or none")
        known = set(self.target) | set(self.features)
        for name, cols in (("future_features", self.future_features), ("static_features", self.static_features)):
            if set(cols) & known:
                raise ValueError(f"{name}: {sorted(set(cols) & known)[0]!r} is also a target or another "
                                 "feature; name a column in one role only")
            known |= set(cols)
        if self.static_features and not self.id_column:
            raise ValueError("static_features are constant per series of a panel: name the series with --id-column")
        if (self.future_features or self.static_features or self.holidays or self.calendar != ["none"]) \
                and self.source != "file":
            raise ValueError("calendar, holidays and future_features read a file's columns and time axis: "
                             "use them with --data FILE")
        if self.season_length and self.season_length > self.window:
            raise ValueError(f"season_length {self.season_length} is longer than window {self.window}: "
                             "the seasonal-naive baseline looks one season back inside a window; "
                             "raise --window or lower --season-length")
        return self

    @property
    def per_step(self) -> bool:
        """True when the target has one value per input step (no forecast horizon)."""
        return SOURCES[self.source].per_step

    @property
    def scaling(self) -> str:
        """The normalisation actually applied (``auto`` resolved)."""
        if self.normalize != "auto":
            return self.normalize
        return "global" if self.per_step else "window_std"

    @property
    def step(self) -> int:
        """Rows between window starts (``stride`` resolved)."""
        return self.stride or (self.window if self.per_step else 1)


class ModelConfig(Section):
    cell: Literal[tuple(CELLS)] = Field("gru", description="Recurrent cell")
    hidden_size: int = Field(32, gt=0, description="Hidden units per direction")
    num_layers: int = Field(1, gt=0, description="Stacked recurrent layers")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout between stacked layers")
    variants: list[Variant] = Field(["rnn", "brnn"], min_length=1,
                                    description="Directions to train: rnn (uni), brnn (bi)")
    autoregressive: bool = Field(False, description="Add a linear autoregressive term to the point "
                                 "forecast (LSTNet's highway): a linear map of the normalised window, "
                                 "fitted by least squares before training, which then fits the rest. "
                                 "Off by default: with 48-step windows it cut the hourly file's error "
                                 "2.2x (0.057 against 0.125), but on the seven other shared files it "
                                 "was 1-22 % worse on four, 3-9 % better on three (benchmarks/RESULTS.md)")
    quantiles: list[float] = Field([], description="Quantile levels to forecast, sorted, in (0, 1), "
                                   "e.g. 0.1 0.5 0.9 (0.5 is added when missing: the median is the "
                                   "point forecast); trains with the pinball loss and conformal "
                                   "intervals calibrated on the validation rows")

    @field_validator("quantiles")
    @classmethod
    def _levels(cls, levels: list[float]) -> list[float]:
        if not levels:
            return levels
        bad = [q for q in levels if not 0 < q < 1]
        if bad:
            raise ValueError(f"quantile {bad[0]:g} is not in (0, 1) (exclusive); e.g. --quantiles 0.1 0.5 0.9")
        if levels != sorted(set(levels)):
            raise ValueError(f"quantiles {' '.join(f'{q:g}' for q in levels)} must be sorted and unique, "
                             f"e.g. --quantiles {' '.join(f'{q:g}' for q in sorted(set(levels)))}")
        return levels if 0.5 in levels else sorted([*levels, 0.5])

    @model_validator(mode="after")
    def _dropout_needs_layers(self) -> ModelConfig:
        # PyTorch applies dropout between stacked layers only: with one layer it would be logged
        # as a setting while the network has none. An error, not a warning: the user asked for
        # regularisation and would not get it.
        if self.dropout > 0 and self.num_layers == 1:
            raise ValueError(f"dropout {self.dropout} has no effect with num_layers 1 (PyTorch applies "
                             "dropout between stacked layers): set --num-layers 2 or more, or --dropout 0")
        return self


class TrainConfig(Section):
    epochs: int = Field(30, gt=0, description="Passes over the training windows")
    lr: float = Field(0.01, gt=0, description="Learning rate")
    batch_size: int = Field(64, gt=0, description="Windows per optimizer step")
    optimizer: Literal[tuple(OPTIMIZERS)] = Field("adam", description="Optimizer")
    loss: Literal[tuple(LOSSES)] = Field("mse", description="Training loss")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty")
    patience: int = Field(10, ge=0, description="Early-stopping patience in epochs (0: off)")
    grad_clip: float = Field(1.0, ge=0, description="Max gradient norm (0: off)")
    seed: int = Field(0, ge=0, description="Seed for weights and shuffling")
    shuffle: bool = Field(True, description="Shuffle training windows every epoch")
    device: Literal[DEVICES] = Field("auto", description="auto picks CUDA when present")
    amp: bool = Field(False, description="Mixed precision on CUDA")
    num_threads: int = Field(0, ge=0, description="Torch threads per model (0: pick by size)")
    fused: bool = Field(True, description="Fused Adam/AdamW kernel (same updates up to rounding)")
    concurrent: bool = Field(True, description="Train the variants at the same time")
    backtest_folds: int = Field(0, ge=0, description="Rolling-origin backtest folds, expanding "
                                "window, each trained afresh (0: off)")
    warm_start: str | None = Field(
        None, min_length=1, description="Start the network from a registered version's weights: "
        "champion (of tracking.model_name) or a model URI (models:/NAME/VERSION, models:/NAME@ALIAS, "
        "runs:/ID/model); its network, column roles and normalisation must match, its time axis is "
        "kept and its scalers are refitted on the new training rows (measured: keeping them moved "
        "validation RMSE by -3 to +4 % and took longer; refitted, warm and cold cut the same windows)")

    @model_validator(mode="after")
    def _amp_needs_cuda(self) -> TrainConfig:
        # With device 'auto' or 'cuda' the machine decides at run time (the same file may run on
        # a GPU box); an explicit 'cpu' with amp contradicts itself.
        if self.amp and self.device == "cpu":
            raise ValueError("amp (mixed precision) runs on CUDA only, and device is 'cpu': drop --amp")
        return self


class TrackingConfig(Section):
    experiment: str = Field("rnnflow", min_length=1, description="MLflow experiment name")
    model_name: str = Field("rnnflow", min_length=1, description="Registered model name")
    metric: Literal["rmse", "mae", "mse", "interval_score", "crps"] = Field(
        "rmse", description="Error that picks the best variant (on the validation rows) and judges "
        "promotion (on the holdout); with several targets, the mean of each target's error over "
        "the naive forecast's, so no target's units drown another's; interval_score (Winkler, "
        "mean over the central intervals) and crps need --quantiles")
    # 0.15: the shared files' test parts have 36-46 one-step rows, where the binomial spread of
    # an 80 % coverage alone is 0.06-0.07; 0.15 (over two of those) lets a calibrated model
    # through about 97 % of the time and stops one whose intervals are off by more (measured:
    # benchmarks/RESULTS.md, issue 21).
    max_coverage_error: float = Field(
        0.15, gt=0, le=1, description="With --quantiles: a challenger whose holdout coverage of any "
        "central interval is further than this from nominal (e.g. 0.8 +- 0.15) is registered, "
        "tagged with why, and never champion")
    register_best: bool = Field(True, description="Register the best variant in the model registry")

    @field_validator("model_name")
    @classmethod
    def _mlflow_accepts_name(cls, name: str) -> str:
        # MLflow's own rule, applied before any run starts (imported here: the tracking
        # package imports this module's neighbours, and only it may import MLflow).
        from rnnflow.tracking.registry import check_model_name

        return check_model_name(name)
    min_improvement: float = Field(0.0, ge=0, lt=1, description="Share by which a challenger must beat "
                                   "the champion's error on the same holdout to be promoted")
    min_skill: float = Field(0.0, lt=1, description="Skill (1 - error / baseline error) a version "
                             "needs against the naive forecast, and the seasonal one when season_length "
                             "is set, on its holdout to become champion; 0: any improvement, "
                             "negative: allow a model worse than naive")


class MonitorConfig(Section):
    """What `rnnflow monitor` watches and when it calls a version stale (not part of a training
    run's config: a monitoring pass trains nothing)."""

    model_uri: str = Field("models:/rnnflow@champion", min_length=1,
                           description="Registered version to watch: models:/NAME@ALIAS or models:/NAME/VERSION")
    data: str = Field(..., min_length=1, description="The growing source, with the columns the version "
                      "was trained on: a CSV or Parquet file, a folder or glob of them, or an "
                      "SQLAlchemy URL with --table or --query (a password is kept in "
                      "RNNFLOW_DATA_PASSWORD and shown as ***); rows after the last one it was "
                      "trained and judged on are scored")
    # The same fields as the training source's: one definition each.
    table: str | None = DataConfig.model_fields["table"]
    query: str | None = DataConfig.model_fields["query"]
    duplicates: Literal["fail", "last", "first"] = DataConfig.model_fields["duplicates"]
    period: str | None = Field(
        None, description="Scoring period: a pandas period alias (D, W, M, Q, Y, h) on dated "
        "series, or a number of time steps; default: the series' season (season_length steps), "
        "else one day on sub-daily series, else one window of steps")
    stale_skill: float = Field(
        0.0, lt=1, description="A period is bad when the version's skill (1 - rmse / baseline rmse, "
        "the worst over naive and seasonal naive) is at or below this: 0 means it no longer beats "
        "the baselines it was promoted over")
    stale_ratio: float = Field(
        1.5, gt=1, description="A period is also bad when its rmse is above this many times the "
        "rmse on the holdout the version was promoted with. 1.5: on replays of nottem and "
        "airpassengers a clean series stayed at 0.93-1.49, a seasonal swing x3 at 5.0-9.1 "
        "(README, Keep a model fresh)")
    stale_periods: int | None = Field(
        None, gt=0, description="Bad periods in a row (the latest ones) that make the version "
        "stale; default: the periods one window spans, plus one. A level shift leaves every "
        "window that straddles it wrong, and window normalisation has absorbed it one window "
        "later: it must not be called stale, a change that lasts longer must")

    @field_validator("data")
    @classmethod
    def _no_password(cls, data: str) -> str:
        return hide_password(data)  # before a flow parameter, tag or message can hold it


class FloatRange(Section):
    type: Literal["float"]
    low: float
    high: float
    log: bool = Field(False, description="Sample on a log scale (low must be > 0)")

    @model_validator(mode="after")
    def _range(self) -> FloatRange:
        if self.low > self.high:
            raise ValueError(f"empty range: low {self.low} is above high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0 (got {self.low})")
        return self

    def bounds(self) -> list[float]:
        return [self.low, self.high]


class IntRange(Section):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, gt=0, description="Spacing of the values from low")
    log: bool = Field(False, description="Sample on a log scale (step must be 1)")

    @model_validator(mode="after")
    def _range(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"empty range: low {self.low} is above high {self.high}")
        if self.log and (self.low <= 0 or self.step != 1):
            raise ValueError("log scale needs low > 0 and step 1")
        return self

    def bounds(self) -> list[int]:
        return [self.low, self.low + (self.high - self.low) // self.step * self.step]


class Choice(Section):
    type: Literal["categorical"]
    choices: list[Union[bool, int, float, str]] = Field(min_length=1)

    def bounds(self) -> list:
        return list(self.choices)


Distribution = Annotated[Union[FloatRange, IntRange, Choice], Field(discriminator="type")]

# Tunable name -> (config section, field). `direction` is one entry of model.variants.
TUNABLE: dict[str, tuple[str, str]] = {
    "cell": ("model", "cell"), "direction": ("model", "variants"),
    "hidden_size": ("model", "hidden_size"), "num_layers": ("model", "num_layers"),
    "dropout": ("model", "dropout"), "lr": ("train", "lr"),
    "weight_decay": ("train", "weight_decay"), "batch_size": ("train", "batch_size"),
    "window": ("data", "window"), "autoregressive": ("model", "autoregressive"),
}

DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "cell": {"type": "categorical", "choices": ["gru", "lstm"]},
    "direction": {"type": "categorical", "choices": ["rnn", "brnn"]},
    "hidden_size": {"type": "int", "low": 16, "high": 96, "step": 16},
    "num_layers": {"type": "int", "low": 1, "high": 2},
    "dropout": {"type": "float", "low": 0.0, "high": 0.3},
    "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
    "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
}


def apply_params(values: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A nested config dict with the sampled ``params`` (tunable names) set in it."""
    out = copy.deepcopy(values)
    for name, value in params.items():
        section, field = TUNABLE[name]
        out.setdefault(section, {})[field] = [value] if name == "direction" else value
    return out


class TuneConfig(Section):
    trials: int = Field(20, gt=0, description="Trials to run (added to the study when it exists)")
    study: str | None = Field(None, min_length=1, description="Optuna study name; an existing study "
                              "is resumed (default: a new study named after the data and time)")
    storage: str | None = Field(None, description="Optuna storage, any SQLAlchemy URL (default: "
                                "sqlite optuna.db beside the MLflow store)")
    sampler: Literal["tpe", "random"] = Field("tpe", description="Optuna sampler")
    sampler_seed: int = Field(0, ge=0, description="Seed of the sampler")
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median", description="Stops trials whose validation loss lags the others'")
    startup_trials: int = Field(4, ge=0, description="Completed trials before the median pruner prunes")
    warmup_epochs: int = Field(3, ge=0, description="Epochs every trial runs before it can be pruned")
    dask_address: str | None = Field(None, description="Dask scheduler, e.g. tcp://HOST:8786 "
                                     "(default: a local cluster)")
    n_workers: int | None = Field(None, gt=0, description="Local cluster worker processes, one trial "
                                  "each (default: one per CPU core)")
    threads_per_worker: int = Field(1, gt=0, description="Torch threads per trial")
    space: dict[str, Distribution] = Field(
        default_factory=lambda: copy.deepcopy(DEFAULT_SPACE), validate_default=True,
        description="Parameter name -> distribution: {type: float, low, high, log}, "
        "{type: int, low, high, step}, {type: categorical, choices}")

    @field_validator("space", mode="before")
    @classmethod
    def _known_names(cls, space: Any) -> Any:
        if isinstance(space, dict):
            unknown = sorted(set(space) - set(TUNABLE))
            if unknown:
                raise ValueError(f"unknown parameter {unknown[0]!r}; tunable: {', '.join(TUNABLE)}")
            if not space:
                raise ValueError("empty search space; tunable: " + ", ".join(TUNABLE))
        return space


# Each preset is a set of defaults under what the user sets; `tutorial` is the seed tutorial:
# X (16, 10, 5) -> y (16, 10, 1), nn.RNN(5, 8) + Linear(8, 1), Adam lr 0.01, MSE, 50 epochs,
# one full batch. Its 4 + 4 extra windows give the pipeline a validation and a test set; it
# is used as generated (normalize none) so the losses match the tutorial's.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "smoothing": {},
    "sine": {"data": {"source": "sine", "horizon": 4, "noise": 0.1, "length": 160}},
    "panel": {"data": {"source": "panel", "n_series": 20, "length": 240, "window": 24,
                       "season_length": 12, "noise": 0.1}},
    "tutorial": {
        "data": {"source": "random", "length": 240, "window": 10, "n_features": 5, "n_targets": 1,
                 "val_fraction": 1 / 6, "test_fraction": 1 / 6, "normalize": "none"},
        "model": {"cell": "rnn", "hidden_size": 8, "variants": ["rnn"]},
        "train": {"epochs": 50, "lr": 0.01, "batch_size": 16, "patience": 0, "grad_clip": 0.0,
                  "shuffle": False},
    },
}


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class PipelineConfig(Section):
    """Everything one training flow run needs."""

    preset: Preset = Field("smoothing", description="Bundle of defaults: " + ", ".join(PRESETS))
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()
    tune: TuneConfig = TuneConfig()

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        preset = values.get("preset", "smoothing")
        if preset not in PRESETS:
            return values  # field validation reports the allowed names
        values = {k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in values.items()}
        values = merge(PRESETS[preset], values)
        if (values.get("model") or {}).get("quantiles") and "loss" not in (values.get("train") or {}):
            values = merge(values, {"train": {"loss": "pinball"}})  # what a quantile head trains with
        return values

    @model_validator(mode="after")
    def _quantiles_fit(self) -> PipelineConfig:
        q = self.model.quantiles
        if q and self.train.loss != "pinball":
            raise ValueError(f"--quantiles train with the pinball loss, not {self.train.loss!r}: "
                             "drop --loss or set --loss pinball")
        if not q and self.train.loss == "pinball":
            raise ValueError("loss 'pinball' needs quantile levels: add e.g. --quantiles 0.1 0.5 0.9")
        return self

    @model_validator(mode="after")
    def _linear_term_has_a_window(self) -> PipelineConfig:
        if self.model.autoregressive and self.data.per_step:
            raise ValueError(f"autoregressive forecasts from a window; source {self.data.source!r} "
                             "predicts every step: drop --autoregressive")
        return self

    @model_validator(mode="after")
    def _space_fits_the_config(self) -> PipelineConfig:
        """Both ends of every range (every choice) must make a valid section, so no trial fails
        on a value the config would have refused."""
        for name, dist in self.tune.space.items():
            section, field = TUNABLE[name]
            current = getattr(self, section)
            # Dropout needs stacked layers: judge it with the most layers the space can draw
            # (a trial that draws one layer trains, and logs, dropout 0).
            with_layers = ({"num_layers": max(self.tune.space["num_layers"].bounds())}
                           if name == "dropout" and "num_layers" in self.tune.space else {})
            for value in dist.bounds():
                if name == "num_layers" and value == 1:
                    with_layers = {"dropout": 0.0}  # what a one-layer trial trains
                try:
                    type(current).model_validate({**current.model_dump(), **with_layers,
                                                  **apply_params({}, {name: value})[section]})
                except ValidationError as exc:
                    raise ValueError(f"tune.space.{name}: {value!r} is not allowed ({section}.{field}: "
                                     f"{describe(exc).split(': ', 1)[-1]})") from None
                if name == "autoregressive" and value and self.data.per_step:
                    raise ValueError(f"tune.space.autoregressive: True is not allowed (source "
                                     f"{self.data.source!r} predicts every step; the term forecasts from a window)")
        return self


class ConfigError(ValueError):
    """A config that cannot be used; the message is one line naming the parameter."""


def describe(error: ValidationError) -> str:
    """One line per problem: 'train.epochs: Input should be greater than 0 (got 0)'."""
    lines = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"]) or "config"
        got = f" (got {e['input']!r})" if e["type"] not in ("extra_forbidden", "value_error") else ""
        msg = "unknown parameter" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
        # a config-wide check names its own parameter
        lines.append(msg if not e["loc"] and e["type"] == "value_error" else f"{where}: {msg}{got}")
    return "; ".join(lines)


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> PipelineConfig:
    """Config from an optional YAML file with ``overrides`` (nested dict) on top."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path}: malformed YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return PipelineConfig.model_validate(merge(raw, overrides or {}))
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None
