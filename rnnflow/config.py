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

Preset = Literal["smoothing", "sine", "tutorial"]
Variant = Literal["rnn", "brnn"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataConfig(Section):
    source: Literal["random", "sine", "smoothing", "file"] = Field(
        "smoothing", description="random (the tutorial's noise), sine (forecast the next steps), "
        "smoothing (denoise every step), file (your CSV/Parquet; set by --data)")
    path: str | None = Field(None, description="CSV or Parquet file to train on",
                             json_schema_extra={"flag": "--data"})
    target: list[str] = Field([], description="Target column(s) of the file (repeatable)")
    features: list[str] = Field([], description="Extra input columns (targets are inputs too)")
    time_column: str | None = Field(None, description="Column with the time stamps")
    sort_time: bool = Field(False, description="Sort rows by the time column (else unsorted fails)")
    layout: Literal["long", "wide"] = Field(
        "long", description="long: one row per step; wide: one row per period (e.g. a year) with "
        "one column per step, melted row by row into one series")
    missing: Literal["fail", "interpolate", "ffill", "drop"] = Field(
        "fail", description="What to do with missing values in the file")
    stride: int = Field(1, gt=0, description="Steps between the starts of consecutive windows")
    season_length: int | None = Field(None, gt=0, description="Season for the seasonal-naive baseline")
    n_samples: int = Field(1024, gt=0, description="Windows to generate")
    window: int = Field(48, gt=0, description="Time steps per input window")
    horizon: int = Field(1, gt=0, description="Steps to forecast (sine); per-step sources ignore it")
    n_features: int = Field(1, gt=0, description="Input features per step (random source)")
    n_targets: int = Field(1, gt=0, description="Targets per step (random source)")
    noise: float = Field(0.3, ge=0, description="Standard deviation of the added noise")
    val_fraction: float = Field(0.15, ge=0, lt=1, description="Share of windows for validation")
    test_fraction: float = Field(0.15, ge=0, lt=1, description="Share of windows for the test set")
    data_seed: int = Field(0, ge=0, description="Seed of the data generator")

    @model_validator(mode="before")
    @classmethod
    def _file_source(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("path") and "source" not in values:
            values = {**values, "source": "file"}
        return values

    @model_validator(mode="after")
    def _file_needs_path_and_target(self) -> DataConfig:
        if self.source == "file" and not (self.path and self.target):
            raise ValueError("source 'file' needs path (--data FILE) and at least one target (--target COL)")
        if self.path and self.source != "file":
            raise ValueError(f"path is only read with source 'file', not {self.source!r}")
        if self.layout == "wide" and len(self.target) != 1:
            raise ValueError("layout 'wide' melts the file into one series: give exactly one target name")
        return self

    @property
    def per_step(self) -> bool:
        """True when the target has one value per input step (no forecast horizon)."""
        return self.source in ("random", "smoothing")


class ModelConfig(Section):
    cell: Literal["rnn", "lstm", "gru"] = Field("gru", description="Recurrent cell")
    hidden_size: int = Field(32, gt=0, description="Hidden units per direction")
    num_layers: int = Field(1, gt=0, description="Stacked recurrent layers")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout between stacked layers")
    variants: list[Variant] = Field(["rnn", "brnn"], min_length=1,
                                    description="Directions to train: rnn (uni), brnn (bi)")


class TrainConfig(Section):
    epochs: int = Field(30, gt=0, description="Passes over the training windows")
    lr: float = Field(0.01, gt=0, description="Learning rate")
    batch_size: int = Field(64, gt=0, description="Windows per optimizer step")
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adam", description="Optimizer")
    loss: Literal["mse", "mae", "huber"] = Field("mse", description="Training loss")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty")
    patience: int = Field(10, ge=0, description="Early-stopping patience in epochs (0: off)")
    grad_clip: float = Field(1.0, ge=0, description="Max gradient norm (0: off)")
    seed: int = Field(0, ge=0, description="Seed for weights and shuffling")
    shuffle: bool = Field(True, description="Shuffle training windows every epoch")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto picks CUDA when present")
    amp: bool = Field(False, description="Mixed precision on CUDA")
    num_threads: int = Field(0, ge=0, description="Torch threads per model (0: pick by size)")
    fused: bool = Field(True, description="Fused Adam/AdamW kernel (same updates up to rounding)")
    concurrent: bool = Field(True, description="Train the variants at the same time")
    backtest_folds: int = Field(0, ge=0, description="Rolling-origin backtest folds, expanding "
                                "window, each trained afresh (0: off)")


class TrackingConfig(Section):
    experiment: str = Field("rnnflow", min_length=1, description="MLflow experiment name")
    model_name: str = Field("rnnflow", min_length=1, description="Registered model name")
    metric: Literal["rmse", "mae", "mse"] = Field("rmse", description="Test metric that picks the "
                                                   "best variant (lower is better)")
    register_best: bool = Field(True, description="Register the best variant in the model registry")
    min_improvement: float = Field(0.0, ge=0, lt=1, description="Share by which a challenger must beat "
                                   "the champion's metric on the same holdout to be promoted")


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
    "window": ("data", "window"),
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
# one full batch. Its 4 + 4 extra windows give the pipeline a validation and a test set.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "smoothing": {},
    "sine": {"data": {"source": "sine", "horizon": 4, "noise": 0.1}},
    "tutorial": {
        "data": {"source": "random", "n_samples": 24, "window": 10, "n_features": 5,
                 "n_targets": 1, "val_fraction": 1 / 6, "test_fraction": 1 / 6},
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
        return merge(PRESETS[preset], values)

    @model_validator(mode="after")
    def _space_fits_the_config(self) -> PipelineConfig:
        """Both ends of every range (every choice) must make a valid section, so no trial fails
        on a value the config would have refused."""
        for name, dist in self.tune.space.items():
            section, field = TUNABLE[name]
            current = getattr(self, section)
            for value in dist.bounds():
                try:
                    type(current).model_validate({**current.model_dump(), **apply_params({}, {name: value})[section]})
                except ValidationError as exc:
                    raise ValueError(f"tune.space.{name}: {value!r} is not allowed ({section}.{field}: "
                                     f"{describe(exc).split(': ', 1)[-1]})") from None
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
