"""Warm start: a training that begins from a registered version's weights.

The new network starts from the source version's ``state_dict`` when its network config is
the same (every field that shapes a weight); the data are read with the source's column roles
and time axis, and its scalers are refitted on the new training rows (see ``REFIT_SCALERS``).
Every mismatch is one line that names the field and both values, raised before any run starts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from rnnflow.preprocess import Preprocessor
from rnnmodel import NetworkConfig, SequenceRegressor

CHAMPION = "champion"
# Measured (benchmarks/warm_start.py, 3 files with 12-17 % of rows appended, 5 seeds): keeping
# the source's scalers instead of refitting them moved the validation RMSE by -3 % to +4 % per
# file (median ratio 0.999) and took longer (0.53-1.16 of cold's time against 0.48-0.99):
# window normalisation removes most of what a scaler does. Refitting also means the warm and
# cold challengers cut identical windows, so their validation losses compare directly.
REFIT_SCALERS = True
# Column roles a warm start keeps: a model fed other columns in other places is another model.
ROLES = ("targets", "features", "time", "series_id", "targets_are_inputs", "layout")
# Dropout shapes no weight: a retrain may change it and still start from the same weights.
SHAPE_FIELDS = tuple(f.name for f in fields(NetworkConfig) if f.name != "dropout")


class WarmStartError(ValueError):
    """A warm start that cannot be made; one line naming the field and both values."""


@dataclass(frozen=True)
class WarmStart:
    """A source version, loaded once: where it is, its network and its fitted preprocessor."""

    uri: str  # models:/NAME/VERSION (an alias resolved), or the runs:/ URI given
    run_id: str  # the MLflow run that logged the source model
    network: SequenceRegressor  # on the CPU, in eval mode
    pre: Preprocessor  # fitted at the source's training
    refit_scalers: bool = REFIT_SCALERS

    @property
    def key(self) -> tuple:
        return self.uri, self.run_id, self.refit_scalers

    def tags(self) -> dict[str, str]:
        """Lineage tags for runs and versions trained from this start."""
        return {"warm_start_from": self.uri, "warm_start_run_id": self.run_id}

    def adopt(self, pre: Preprocessor, source: str) -> Preprocessor:
        """``pre`` (built from the new config) with the source's time axis; WarmStartError
        when it reads other columns or normalises differently."""
        own, new = self.pre.columns, pre.columns
        diff = [f"{r} {getattr(own, r)!r} (this config: {getattr(new, r)!r})" for r in ROLES
                if getattr(own, r) != getattr(new, r)]
        if self.pre.scaling != pre.scaling:
            diff.append(f"normalize {self.pre.scaling!r} (this config: {pre.scaling!r})")
        if diff:
            scaling = f" and --normalize {self.pre.scaling}" if self.pre.scaling != pre.scaling else ""
            raise WarmStartError(f"train.warm_start: {self.uri} reads its data differently from this "
                                 f"config on {source}: {'; '.join(diff)}; use its columns{scaling} or start cold")
        return replace(pre, axis=self.pre.axis)

    def scalers(self, pre: Preprocessor) -> Preprocessor:
        """``pre`` with the source's scalers for the series it knows, unless they are refitted."""
        if self.refit_scalers:
            return pre
        return replace(pre, scalers={sid: self.pre.scalers.get(sid, s) for sid, s in pre.scalers.items()})

    def check(self, config: NetworkConfig, variant: str) -> None:
        """WarmStartError naming every shape field where ``config`` differs from the source's."""
        own = self.network.config
        diff = [f"{f} {getattr(own, f)!r} (this config: {getattr(config, f)!r})"
                for f in SHAPE_FIELDS if getattr(own, f) != getattr(config, f)]
        if diff:
            flags = {"cell": f"--cell {own.cell}", "hidden_size": f"--hidden-size {own.hidden_size}",
                     "num_layers": f"--num-layers {own.num_layers}", "horizon": f"--horizon {own.horizon}",
                     "bidirectional": f"--variants {'brnn' if own.bidirectional else 'rnn'}"}
            named = [flags[f] for f in SHAPE_FIELDS if f in flags and getattr(own, f) != getattr(config, f)]
            hint = f" ({' '.join(named)})" if named else ""
            raise WarmStartError(f"train.warm_start: {self.uri} has another network than variant "
                                 f"{variant}: {'; '.join(diff)}; train the same network{hint} or start cold")

    def start(self, model: SequenceRegressor, variant: str) -> SequenceRegressor:
        """``model`` with the source's weights, copied (the source stays untouched)."""
        self.check(model.config, variant)
        model.load_state_dict({k: v.detach().clone() for k, v in self.network.state_dict().items()})
        return model


def resolve_uri(spec: str, model_name: str) -> tuple[str, str]:
    """``champion`` (of ``model_name``), ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or
    ``runs:/RUN_ID/PATH`` -> (a URI that no longer moves, the run id that logged it).
    WarmStartError when it names nothing in the registry."""
    from rnnflow import tracking

    if spec == CHAMPION:
        spec = f"models:/{model_name}@{CHAMPION}"
    try:
        return tracking.pin_model_uri(tracking.client(), spec)
    except ValueError as exc:
        missing = "; train one first or start cold" if " has no " in str(exc) else ""
        raise WarmStartError(f"train.warm_start: {exc}{missing}") from None


_LOADED: dict[tuple, WarmStart] = {}


def load(spec: str, model_name: str, refit_scalers: bool = REFIT_SCALERS) -> WarmStart:
    """The warm start ``spec`` names (see ``resolve_uri``), its model loaded once per process."""
    from rnnflow.forecaster import load_forecaster
    from rnnflow.tracking import missing_artifacts

    uri, run_id = resolve_uri(spec, model_name)
    key = (uri, run_id, refit_scalers)
    if key not in _LOADED:
        try:
            forecaster = load_forecaster(uri)
        except Exception as exc:
            gone = missing_artifacts(uri)
            why = f"its artifact location {gone} does not exist" if gone else str(exc).splitlines()[0][:200]
            raise WarmStartError(f"train.warm_start: {uri} cannot be loaded: {why}") from None
        _LOADED[key] = WarmStart(uri, run_id, forecaster.network.cpu().eval(), forecaster.pre, refit_scalers)
    return _LOADED[key]


def of(cfg) -> WarmStart | None:
    """The warm start of a PipelineConfig (None when it trains cold)."""
    if not cfg.train.warm_start:
        return None
    return load(cfg.train.warm_start, cfg.tracking.model_name)
