"""Helpers shared by the metastore backends: value checks, flattening, meta-feature tags.

The tag and artifact names themselves live in :mod:`metastore.schema`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from metastore.errors import StoreError
from metastore.records import FAILED, FINISHED, TaskHistory
from metastore.schema import MLFLOW_PREFIX, RESERVED_TAGS, TAG_META_PREFIX

MAX_TAG_VALUE = 8000  # MLflow's limit on a run tag value
MAX_PARAM_VALUE = 500  # params are for the UI table; longer values are truncated
MAX_KEY = 250  # MLflow's limit on a tag, param or metric key
END_STATES = (FINISHED, FAILED)
KILLED = "killed"  # a search stopped by the user (Ctrl-C); trials end finished or failed
SEARCH_END_STATES = (FINISHED, FAILED, KILLED)

_KEY_BAD_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")


def is_reserved(key: str) -> bool:
    """Whether ``key`` is a tag the store itself manages (or an MLflow system tag)."""
    return key in RESERVED_TAGS or key.startswith(TAG_META_PREFIX) or key.startswith(MLFLOW_PREFIX)


def user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The free tags of a run: every tag that the store does not manage itself."""
    return {k: v for k, v in tags.items() if not is_reserved(k)}


def check_user_tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    """Validate tags given by a caller; return them as ``str -> str``.

    Raises:
        StoreError: A key is reserved (``nasw.state``, ``mlflow.*``, ...) or too long.
    """
    out: dict[str, str] = {}
    for key, value in (tags or {}).items():
        key = str(key)
        if is_reserved(key):
            raise StoreError(f"tag key {key!r} is reserved by the metastore; choose another name")
        if not key or len(key) > MAX_KEY:
            raise StoreError(f"tag key must have 1 to {MAX_KEY} characters; got {len(key)}")
        out[key] = str(value)
    return out


def check_end_state(state: str, what: str, allowed: tuple[str, ...] = END_STATES) -> str:
    """``state`` if it is one of ``allowed`` (by default ``finished`` or ``failed``).

    Raises:
        StoreError: Any other state.
    """
    if state not in allowed:
        raise StoreError(f"a {what} ends as one of {', '.join(map(repr, allowed))}; got {state!r}")
    return state


def clean_key(key: str) -> str:
    """A key MLflow accepts: odd characters become ``_``, at most 250 characters."""
    return _KEY_BAD_CHARS.sub("_", str(key))[:MAX_KEY] or "_"


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marking the cut with ``...``."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def param_items(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Params as logged: clean keys, string values truncated to 500 characters."""
    return {clean_key(k): truncate(_scalar_text(v), MAX_PARAM_VALUE) for k, v in (params or {}).items()}


def flat_scalars(spec: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """The scalar leaves of a nested spec, keyed by dotted path (lists are skipped).

    Args:
        spec: A JSON-able mapping.
        prefix: Key prefix used while recursing.

    Returns:
        ``{"budget": 30, "train.epochs": 5, ...}``.
    """
    out: dict[str, Any] = {}
    for key, value in (spec or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_scalars(value, prefix=f"{name}."))
        elif value is None or isinstance(value, (str, int, float, bool)):
            out[name] = value
    return out


def float_metrics(metrics: Mapping[str, float] | None) -> dict[str, float]:
    """Metrics as ``str -> float``.

    Raises:
        StoreError: A value is not a number.
    """
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            raise StoreError(f"metric {key!r} must be a number; got {value!r}") from None
    return out


def meta_tags(meta_features: Mapping[str, float] | None) -> dict[str, str]:
    """Meta-features as tags ``nasw.meta.<name> = repr(float)``."""
    return {TAG_META_PREFIX + clean_key(k): repr(float(v)) for k, v in (meta_features or {}).items()}


def meta_from_tags(tags: Mapping[str, str]) -> dict[str, float]:
    """Inverse of :func:`meta_tags` (unparsable values are skipped)."""
    out: dict[str, float] = {}
    for key, value in tags.items():
        if key.startswith(TAG_META_PREFIX):
            try:
                out[key[len(TAG_META_PREFIX) :]] = float(value)
            except ValueError:
                continue
    return out


def spec_json(spec: Mapping[str, Any] | None) -> str:
    """The spec as JSON text (values JSON cannot hold are written with ``str``)."""
    return json.dumps(dict(spec or {}), sort_keys=True, default=str)


def group_histories(
    rows: list[tuple[tuple[int, str], int, str, str, str, float, dict[str, Any]]],
    search_task: Mapping[str, str],
    search_order: Mapping[str, tuple[int, str]],
    meta_by_search: Mapping[str, Mapping[str, str]],
) -> dict[str, TaskHistory]:
    """Sorted ``(order, number, task, trial id, genotype, value, fidelity)`` rows into task histories."""
    grouped: dict[str, tuple[list[str], list[float], list[str], list[dict[str, Any]]]] = {}
    for _, _, task, trial_id, genotype, value, fidelity in rows:
        genotypes, values, ids, fids = grouped.setdefault(task, ([], [], [], []))
        genotypes.append(genotype)
        values.append(value)
        ids.append(trial_id)
        fids.append(fidelity)
    meta: dict[str, dict[str, float]] = {}
    for search_id in sorted(search_task, key=lambda s: search_order[s]):  # newest search wins
        meta.setdefault(search_task[search_id], {}).update(meta_from_tags(meta_by_search.get(search_id, {})))
    return {
        task: TaskHistory(
            task=task,
            genotype_jsons=genotypes,
            values=np.asarray(values, dtype=np.float64),
            meta_features=meta.get(task, {}),
            trial_ids=ids,
            fidelities=fids,
        )
        for task, (genotypes, values, ids, fids) in grouped.items()
    }


def is_number(value: float) -> bool:
    """False for NaN (histories skip trials whose objective is NaN)."""
    return not math.isnan(value)


def _scalar_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)
