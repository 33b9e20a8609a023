"""Declarative tasks: one TOML file in ``tasks/`` per dataset (data, never executed)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from workbench.errors import TaskError

TASKS_ENV = "NASW_TASKS"
KINDS = ("trained", "tabular")
_TOP_KEYS = {
    "name",
    "description",
    "kind",
    "dataset",
    "metric",
    "space",
    "training",
    "split",
    "meta_features",
    "fidelity",
}


@dataclass(frozen=True)
class Task:
    """A task file's content.

    Attributes:
        name: Task name (the MLflow experiment name).
        description: One line for ``nasw tasks``.
        kind: ``trained`` (networks are trained) or ``tabular`` (looked up in a benchmark table).
        dataset: ``loader`` plus loader options.
        objective: Metric the search maximises (``val_accuracy``).
        report: Metric reported for the final model (``test_accuracy``).
        space: ``kind`` plus space settings.
        training: Trainer settings (epochs, batch_size, lr, weight_decay, ...).
        split: ``seed``, ``test`` and ``valid`` fractions.
        meta_features: Declared numeric descriptors (merged with measured ones for trained tasks).
        path: Where the file was read from.
    """

    name: str
    description: str
    kind: str
    dataset: dict[str, Any]
    objective: str = "val_accuracy"
    report: str = "test_accuracy"
    space: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    meta_features: dict[str, float] = field(default_factory=dict)
    fidelity: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (recorded with every search)."""
        return {
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "dataset": self.dataset,
            "metric": {"objective": self.objective, "report": self.report},
            "space": self.space,
            "training": self.training,
            "split": self.split,
            "meta_features": self.meta_features,
            "fidelity": self.fidelity,
        }


def tasks_dirs() -> list[Path]:
    """Folders searched for ``<name>.toml``: ``$NASW_TASKS``, ``./tasks``, the repository's ``tasks/``."""
    dirs = []
    if os.environ.get(TASKS_ENV):
        dirs += [Path(p) for p in os.environ[TASKS_ENV].split(os.pathsep) if p]
    dirs.append(Path.cwd() / "tasks")
    dirs.append(Path(__file__).resolve().parent.parent / "tasks")
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def find_task_file(name_or_path: str) -> Path:
    """Resolve a task name (``digits``) or a path to a ``.toml`` file."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or os.sep in name_or_path:
        if not p.is_file():
            raise TaskError(f"task file {name_or_path!r} does not exist")
        return p
    for d in tasks_dirs():
        cand = d / f"{name_or_path}.toml"
        if cand.is_file():
            return cand
    known = sorted({f.stem for d in tasks_dirs() for f in d.glob("*.toml")})
    raise TaskError(f"unknown task {name_or_path!r}; expected one of {known} or a path to a .toml file")


def list_tasks() -> list[Task]:
    """Every readable task in :func:`tasks_dirs` (unreadable files are skipped)."""
    seen: dict[str, Task] = {}
    for d in tasks_dirs():
        for f in sorted(d.glob("*.toml")):
            try:
                t = parse_task(f)
            except TaskError:
                continue
            seen.setdefault(t.name, t)
    return sorted(seen.values(), key=lambda t: t.name)


def load_task(name_or_path: str) -> Task:
    """Read and validate a task by name or path."""
    return parse_task(find_task_file(name_or_path))


def _table(doc: dict[str, Any], key: str, where: str, required: bool = False) -> dict[str, Any]:
    value = doc.get(key, {})
    if required and key not in doc:
        raise TaskError(f"{where}: missing [{key}] table")
    if not isinstance(value, dict):
        raise TaskError(f"{where}: [{key}] must be a table, got {type(value).__name__}")
    return dict(value)


def parse_task(path: Path) -> Task:
    """Parse one task file with clear errors for every malformed field."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"cannot read task file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(f"{path.name}: invalid TOML: {exc}") from None
    doc = _resolve_data_path(doc, path.parent)
    return parse_task_dict(doc, where=path.name, default_name=path.stem, path=str(path))


def _resolve_data_path(doc: Any, folder: Path) -> Any:
    """Make a relative ``[dataset] path`` absolute against the task file's folder."""
    dataset = doc.get("dataset") if isinstance(doc, dict) else None
    if isinstance(dataset, dict) and isinstance(dataset.get("path"), str) and dataset["path"]:
        p = Path(dataset["path"]).expanduser()
        if not p.is_absolute():
            doc = {**doc, "dataset": {**dataset, "path": os.path.normpath(folder.resolve() / p)}}
    return doc


def parse_task_dict(doc: Any, where: str = "task", default_name: str = "", path: str = "") -> Task:
    """Validate a task given as a dict (a parsed file, or a spec recorded with a search)."""
    if not isinstance(doc, dict):
        raise TaskError(f"{where}: a task must be a table, got {type(doc).__name__}")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise TaskError(f"{where}: unknown keys {sorted(unknown)}; expected some of {sorted(_TOP_KEYS)}")
    name = doc.get("name", default_name)
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ \t\n"):
        raise TaskError(f"{where}: 'name' must be a non-empty string without spaces or slashes, got {name!r}")
    kind = doc.get("kind", "trained")
    if kind not in KINDS:
        raise TaskError(f"{where}: 'kind' must be one of {KINDS}, got {kind!r}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise TaskError(f"{where}: 'description' must be a string")
    dataset = _table(doc, "dataset", where, required=True)
    if not isinstance(dataset.get("loader"), str):
        raise TaskError(f"{where}: [dataset] needs a string 'loader'")
    metric = _table(doc, "metric", where)
    objective = metric.get("objective", "val_accuracy")
    report = metric.get("report", "test_accuracy")
    if not isinstance(objective, str) or not isinstance(report, str):
        raise TaskError(f"{where}: [metric] objective and report must be strings")
    space = _table(doc, "space", where, required=True)
    if not isinstance(space.get("kind"), str):
        raise TaskError(f"{where}: [space] needs a string 'kind'")
    training = _table(doc, "training", where)
    split = _table(doc, "split", where)
    for key in ("test", "valid"):
        if key in split and not (isinstance(split[key], (int, float)) and 0 < split[key] < 1):
            raise TaskError(f"{where}: [split] {key} must be a fraction in (0, 1), got {split[key]!r}")
    if "seed" in split and not isinstance(split["seed"], int):
        raise TaskError(f"{where}: [split] seed must be an integer, got {split['seed']!r}")
    for key in ("epochs", "batch_size"):
        if key in training and not (isinstance(training[key], int) and training[key] > 0):
            raise TaskError(f"{where}: [training] {key} must be a positive integer, got {training[key]!r}")
    for key in ("lr", "weight_decay"):
        if key in training and not (isinstance(training[key], (int, float)) and training[key] >= 0):
            raise TaskError(f"{where}: [training] {key} must be a non-negative number, got {training[key]!r}")
    for key in ("max_seconds", "grad_clip"):
        value = training.get(key)
        if key in training and not (
            isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")
        ):
            raise TaskError(f"{where}: [training] {key} must be a positive finite number, got {value!r}")
    shrink, perturb = training.get("finetune_shrink", 0.3), training.get("finetune_perturb", 0.1)
    if not (isinstance(shrink, (int, float)) and not isinstance(shrink, bool) and 0 < shrink <= 1):
        raise TaskError(f"{where}: [training] finetune_shrink must be in (0, 1], got {shrink!r}")
    if not (isinstance(perturb, (int, float)) and not isinstance(perturb, bool) and 0 <= perturb < float("inf")):
        raise TaskError(f"{where}: [training] finetune_perturb must be a non-negative number, got {perturb!r}")
    meta = _table(doc, "meta_features", where)
    bad = {k: v for k, v in meta.items() if not isinstance(v, (int, float)) or isinstance(v, bool)}
    if bad:
        raise TaskError(f"{where}: [meta_features] values must be numbers, got {bad}")
    return Task(
        name=name,
        description=description,
        kind=kind,
        dataset=dataset,
        objective=objective,
        report=report,
        space=space,
        training=training,
        split=split,
        meta_features={k: float(v) for k, v in meta.items()},
        fidelity=_table(doc, "fidelity", where),
        path=path,
    )
