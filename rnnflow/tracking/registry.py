"""The model registry: register, aliases, the promotion gate, rollback, the promotion lock,
MLflow's rule for model names; shared by flows and the CLI.

Plain functions over an ``MlflowClient`` passed in, so a flow, a CLI command and a test use
the same code against whatever store that client points at. Aliases and tags only: registry
stages are deprecated. Scores are lower-is-better (rmse).

Promotions of one model are serialised across processes. On a SQLite store by a file lock
beside the database (`backend.file_lock`). On a server store (``http://``, ``postgresql://``
...) there is no file to share, and MLflow has no compare-and-set on tags; a registered model's
name is unique in every MLflow backend, so creating the model ``<name>.promotion-lock``
succeeds for exactly one caller: that is the lock, deleting it releases it. Its owner tags
(host, pid, start time, heartbeat from `liveness`) let a waiter break a lock whose owner is gone.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from rnnflow.tracking import liveness
from rnnflow.tracking.backend import LockTimeout, file_lock, sqlite_path, store_lock_path, wait_seconds

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous-champion"
TAG = "promotion."  # prefix of every tag this module writes on a model version


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    margin: float | None  # (champion - challenger) / champion; None without a usable champion
    challenger_score: float
    champion_score: float | None
    min_improvement: float
    unchanged: bool = False  # the challenger already was the champion: nothing judged or touched
    skills: Mapping[str, float] | None = None  # the challenger's skill per baseline on the holdout


def decide(champion_score: float | None, challenger_score: float, min_improvement: float,
           skills: Mapping[str, float] | None = None, min_skill: float = 0.0,
           champion_error: str | None = None) -> Decision:
    """Promote when the challenger beats every baseline in ``skills`` (name -> skill on the
    holdout, 1 - error / baseline error) by more than ``min_skill``, and there is no champion
    or the challenger beats it by ``min_improvement`` (strictly, so a tie keeps the champion).

    A challenger that loses to a baseline is never promoted, also when there is no champion.
    ``champion_error`` says why a champion could not be scored at all (e.g. its artifacts are
    gone): a challenger that scores and clears the baselines beats it. Lower is better.
    """
    if not 0.0 <= min_improvement < 1.0:
        raise ValueError(f"min_improvement must be in [0, 1), got {min_improvement}")
    args = dict(challenger_score=challenger_score, champion_score=champion_score,
                min_improvement=min_improvement, skills=dict(skills or {}))
    if not math.isfinite(challenger_score):
        # A diverged challenger must never win, whatever the champion scored.
        return Decision(False, f"challenger score {challenger_score} is not finite", None, **args)
    for baseline, skill in (skills or {}).items():
        if not skill > min_skill:
            name = baseline.replace("_", " ")
            return Decision(False, f"loses to the {name} forecast on the holdout: skill {skill:+.3f}, "
                            f"needs above {min_skill:+.3f}", None, **args)
    if champion_error is not None:
        return Decision(True, f"the champion cannot be scored ({champion_error}); "
                              "a challenger that scores replaces it", None, **args)
    if champion_score is None:
        return Decision(True, "no champion yet", None, **args)
    if not math.isfinite(champion_score):
        # The champion failed on this holdout; a finite challenger is the better bet.
        return Decision(True, f"champion score {champion_score} is not finite", None, **args)
    diff = champion_score - challenger_score
    # A perfect (0.0) champion leaves the ratio undefined: a tie is 0, anything else -inf.
    margin = diff / champion_score if champion_score else (0.0 if diff == 0 else -math.inf)
    threshold = champion_score * (1.0 - min_improvement)
    # Strictly better, and by at least the margin: a tie keeps the champion (no churn).
    promote = challenger_score < champion_score and challenger_score <= threshold
    needs = "more than 0%" if min_improvement == 0 else f"at least {min_improvement:.2%}"
    reason = (f"challenger {challenger_score:.6g} vs champion {champion_score:.6g}: "
              f"{margin:+.2%} better, {needs} needed")
    return Decision(promote, reason, margin, **args)


def snapshot_aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """Every alias of the model and the version it points at."""
    model = _require_model(client, name)
    # The store returns versions as ints here but as strings elsewhere: normalise to str.
    return {alias: str(version) for alias, version in model.aliases.items()}


def restore_aliases(client: MlflowClient, name: str, snapshot: Mapping[str, str],
                    only: Iterable[str] | None = None) -> None:
    """Put aliases back as in ``snapshot``: re-point changed ones, delete ones it lacked."""
    current = snapshot_aliases(client, name)
    # Restricting to the aliases a caller touched keeps a concurrent writer's other aliases.
    aliases = set(only) if only is not None else set(snapshot) | set(current)
    for alias in sorted(aliases):
        if alias in snapshot and current.get(alias) != snapshot[alias]:
            client.set_registered_model_alias(name, alias, snapshot[alias])
        elif alias not in snapshot and alias in current:
            client.delete_registered_model_alias(name, alias)


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version ``alias`` points at, or None when the model has no such alias."""
    return snapshot_aliases(client, name).get(alias)


def challenger_version(client: MlflowClient, name: str) -> str:
    """The challenger's version; a ValueError naming the model when there is none."""
    aliases = snapshot_aliases(client, name)
    if CHALLENGER not in aliases:
        raise ValueError(f"registered model {name!r} has no {CHALLENGER!r} alias "
                         f"(aliases: {_listing(aliases)}); register a new version first")
    return aliases[CHALLENGER]


def apply_promotion(client: MlflowClient, name: str, challenger_version: str, decision: Decision,
                    record: Mapping[str, object] | None = None) -> None:
    """Move the aliases atomically when ``decision`` promotes, then record it as version tags.

    ``record`` adds context tags (e.g. ``data_digest``, ``flow_run_id``, ``metric``). The tags
    are written only after the aliases moved, so a failed move leaves no decision behind. A
    challenger that already is the champion is left untouched, tags included.
    """
    challenger_version = str(challenger_version)
    require_version(client, name, challenger_version)
    before = snapshot_aliases(client, name)
    champion = before.get(CHAMPION)
    if champion == challenger_version:
        return
    if decision.promote:
        moves = [(PREVIOUS, champion)] if champion is not None else []
        _move_aliases(client, name, before, moves + [(CHAMPION, challenger_version)])
    tags = {"decision": "promote" if decision.promote else "keep", "reason": decision.reason,
            "challenger_score": decision.challenger_score,
            "champion_score": decision.champion_score, "champion_version": champion,
            "margin": decision.margin,
            "min_improvement": decision.min_improvement, **(record or {})}
    for key, value in tags.items():
        if value is not None:  # absent facts are left out rather than written as "None"
            client.set_model_version_tag(name, challenger_version, TAG + key, str(value))
    if champion is not None:
        client.set_model_version_tag(name, champion, TAG + "last_challenger", challenger_version)
        client.set_model_version_tag(name, champion, TAG + "last_outcome",
                                     "replaced" if decision.promote else "kept")


def promotion_tags(client: MlflowClient, name: str, versions: Iterable[str]) -> dict[str, dict[str, str]]:
    """The ``promotion.*`` tags of each version: what `restore_promotion_tags` puts back."""
    return {str(v): {k: t for k, t in client.get_model_version(name, str(v)).tags.items()
                     if k.startswith(TAG)} for v in versions if v is not None}


def restore_promotion_tags(client: MlflowClient, name: str, before: Mapping[str, Mapping[str, str]]) -> None:
    """Put the ``promotion.*`` tags of the versions in ``before`` back as they were."""
    for version, old in before.items():
        now = {k: t for k, t in client.get_model_version(name, version).tags.items() if k.startswith(TAG)}
        for key in now.keys() - old.keys():
            client.delete_model_version_tag(name, version, key)
        for key, value in old.items():
            if now.get(key) != value:
                client.set_model_version_tag(name, version, key, value)


def rollback(client: MlflowClient, name: str) -> str:
    """Make ``previous-champion`` the champion again and delete ``previous-champion``.

    Not a toggle: a second rollback without a promotion in between fails, so it can never
    re-promote the version just rolled back. That version stays tagged ``promotion.rolled_back``.
    Returns the version that is champion now.
    """
    before = snapshot_aliases(client, name)
    if PREVIOUS not in before:
        raise ValueError(f"registered model {name!r} has no {PREVIOUS!r} alias to roll back to "
                         f"(aliases: {_listing(before)})")
    restored, demoted = before[PREVIOUS], before.get(CHAMPION)
    _move_aliases(client, name, before, [(CHAMPION, restored), (PREVIOUS, None)])
    if demoted is not None and demoted != restored:
        client.set_model_version_tag(name, demoted, TAG + "rolled_back", f"champion -> v{restored}")
    return restored


def _move_aliases(client: MlflowClient, name: str, before: Mapping[str, str],
                  moves: list[tuple[str, str | None]]) -> None:
    """Apply alias moves (None deletes) all or nothing, restoring ``before`` on any failure."""
    try:
        for alias, version in moves:
            if version is None:
                client.delete_registered_model_alias(name, alias)
            else:
                client.set_registered_model_alias(name, alias, version)
    except BaseException as exc:  # Ctrl-C halfway must not leave a half-moved registry either
        try:
            restore_aliases(client, name, before, only=[alias for alias, _ in moves])
        except Exception as restore_exc:
            exc.add_note(f"restoring the aliases of {name!r} failed too: {restore_exc!r}; "
                         f"they were {dict(before)}")
        raise


def _require_model(client: MlflowClient, name: str):
    try:
        return client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        names = sorted(m.name for m in client.search_registered_models())
        raise ValueError(f"no registered model {name!r}; registered models: "
                         f"{', '.join(names) or '(none)'}") from None


def require_version(client: MlflowClient, name: str, version: str) -> None:
    _require_model(client, name)
    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise ValueError(f"registered model {name!r} has no version {version!r}") from None


def _listing(aliases: Mapping[str, str]) -> str:
    return ", ".join(f"{a}=v{v}" for a, v in sorted(aliases.items())) or "none"


def register(model_uri: str, name: str, tags: Mapping[str, object]) -> str:
    """Register ``model_uri`` as a new version of ``name``; returns the version."""
    mv = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    return str(mv.version)


def set_alias(name: str, alias: str, version: str) -> None:
    MlflowClient().set_registered_model_alias(name, alias, version)


def check_model_name(name: str) -> str:
    """MLflow's own rule for registered model names, applied before any run starts."""
    try:
        from mlflow.utils.validation import _validate_model_name
    except ImportError:  # the private helper moved: MLflow checks again at registration
        return name

    try:
        _validate_model_name(name)
    except MlflowException as exc:
        raise ValueError(f"{exc.message} (MLflow refuses this registered model name)") from None
    return name


@contextmanager
def promotion_lock(client, tracking_uri: str, name: str, timeout: float | None = None) -> Iterator[None]:
    """Serialise promotions of model ``name`` across processes (see the module docstring)."""
    db = sqlite_path(tracking_uri)
    if db is not None:
        digest = hashlib.sha256(name.encode()).hexdigest()[:12]  # any model name, a safe file name
        with file_lock(store_lock_path(db, f"promote-{digest}"), f"promoting {name!r}", timeout):
            yield
        return
    with _registry_lock(client, f"{name}.promotion-lock", timeout):
        yield


@contextmanager
def _registry_lock(client, lock_name: str, timeout: float | None) -> Iterator[None]:
    timeout = wait_seconds() if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.create_registered_model(lock_name, tags=liveness.owner_tags(),
                                           description="rnnflow promotion lock; deleted when released")
            break
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        _break_if_stale(client, lock_name)
        if time.monotonic() > deadline:
            raise LockTimeout(f"another promotion has held the registry lock {lock_name!r} for more "
                              f"than {timeout:.0f} s (RNNFLOW_LOCK_TIMEOUT_SECONDS)")
        time.sleep(0.5)
    try:
        yield
    finally:
        client.delete_registered_model(lock_name)


def _break_if_stale(client, lock_name: str) -> None:
    """Delete a lock whose owner is gone (a promotion killed mid-way)."""
    try:
        tags = client.get_registered_model(lock_name).tags
    except MlflowException:
        return  # released meanwhile
    # A lock is held for seconds: an hour-old heartbeat means its owner is gone.
    if liveness.owner_gone(tags, stale_after=max(liveness.stale_seconds(), 3600)):
        try:
            client.delete_registered_model(lock_name)
        except MlflowException:
            pass  # someone else broke it first
