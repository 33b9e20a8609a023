"""Declarative tasks: one TOML file in ``tasks/`` per dataset (data, never executed)."""

from __future__ import annotations

import math
import os
import stat
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
#: Largest task file read (task files are a few hundred bytes).
MAX_TASK_FILE_BYTES = 2**20
#: Deepest nesting of tables and arrays in a task file.
MAX_NESTING = 32
#: Longest task name.
MAX_NAME_LENGTH = 100
#: Characters a task name may hold besides letters and digits (it must start with one of those).
NAME_PUNCTUATION = "-_."
#: Numeric settings of a task file: (table, key) -> (integer?, low, high, low included, high included).
#: Booleans are not numbers, and every bound is finite.
_NUMBERS: dict[tuple[str, str], tuple[bool, float, float, bool, bool]] = {
    ("training", "epochs"): (True, 1, 100_000, True, True),
    ("training", "batch_size"): (True, 1, 2**20, True, True),
    ("training", "lr"): (False, 0, 10, True, True),
    ("training", "weight_decay"): (False, 0, 10, True, True),
    ("training", "grad_clip"): (False, 0, 1e6, False, True),
    ("training", "label_smoothing"): (False, 0, 1, True, False),
    ("training", "max_seconds"): (False, 0, 1e8, False, True),
    ("training", "finetune_epochs"): (True, 1, 100_000, True, True),
    ("training", "finetune_lr"): (False, 0, 10, True, True),
    ("training", "finetune_shrink"): (False, 0, 1, False, True),
    ("training", "finetune_perturb"): (False, 0, 10, True, True),
    ("split", "seed"): (True, 0, 2**31 - 1, True, True),
    ("split", "test"): (False, 0, 1, False, False),
    ("split", "valid"): (False, 0, 1, False, False),
}
#: Largest value of each ``[fidelity]`` number (alone or in a ``[min, max]`` pair); the table's
#: shape and lower bounds are checked by :func:`workbench.evaluate.fidelity.fidelity_space`.
_FIDELITY_HIGH = {"epochs": 100_000, "data_fraction": 1, "resolution": 1, "width_mult": 64, "eta": 100}


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
            what = "is not a regular file" if p.exists() else "does not exist"
            raise TaskError(f"task file {_shown(name_or_path)} {what}")
        return p
    for d in tasks_dirs():
        cand = d / f"{name_or_path}.toml"
        if cand.is_file():
            return cand
    known = sorted({f.stem for d in tasks_dirs() for f in d.glob("*.toml")})
    raise TaskError(f"unknown task {name_or_path!r}; expected one of {known} or a path to a .toml file")


@dataclass(frozen=True)
class BrokenTask:
    """A task file that does not read: where it is and why (one line)."""

    path: Path
    error: str


def scan_tasks() -> tuple[list[Task], list[BrokenTask]]:
    """Every task file in :func:`tasks_dirs`: the tasks that read (by name; the first folder wins a
    name) and the files that do not, each with its error, so one bad file hides no other."""
    seen: dict[str, Task] = {}
    broken: list[BrokenTask] = []
    for d in tasks_dirs():
        for f in sorted(d.glob("*.toml")):
            try:
                t = parse_task(f)
            except TaskError as exc:
                broken.append(BrokenTask(f, str(exc)))
                continue
            seen.setdefault(t.name, t)
    return sorted(seen.values(), key=lambda t: t.name), broken


def list_tasks() -> list[Task]:
    """Every readable task in :func:`tasks_dirs` (unreadable files are skipped; see :func:`scan_tasks`)."""
    return scan_tasks()[0]


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


def printable(text: str, limit: int | None = None) -> str:
    """``text`` safe for a terminal: control, format and separator characters (escape sequences,
    bidirectional overrides, ...) shown as escapes (``\\x1b``), optionally cut to ``limit``
    characters."""
    out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return out if limit is None or len(out) <= limit else out[: max(limit - 3, 0)] + "..."


def _shown(value: Any) -> str:
    """A value for an error line: its repr (which escapes control characters), cut to 80 characters."""
    return printable(repr(value), 80)


def _read_task_file(path: Path) -> str:
    """A task file's text: a regular file of at most :data:`MAX_TASK_FILE_BYTES` (a FIFO or a
    device is refused without opening it)."""
    shown = printable(str(path))
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise TaskError(f"{shown}: is not a regular file; a task file is a TOML text file")
        if st.st_size > MAX_TASK_FILE_BYTES:
            raise TaskError(f"{shown}: {st.st_size} bytes, more than the {MAX_TASK_FILE_BYTES} a task file may take")
        with open(path, "rb") as fh:
            data = fh.read(MAX_TASK_FILE_BYTES + 1)
        if len(data) > MAX_TASK_FILE_BYTES:
            raise TaskError(f"{shown}: more than the {MAX_TASK_FILE_BYTES} bytes a task file may take")
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise TaskError(f"cannot read task file {shown}: {printable(str(reason))}") from None


def parse_task(path: Path) -> Task:
    """Parse one task file with clear errors for every malformed field.

    The name must be :func:`check_task_name`'s safe form; tables and arrays nest at most
    :data:`MAX_NESTING` deep.

    Raises:
        TaskError: One line naming the file and the problem.
    """
    path = Path(path)
    where = printable(path.name)
    text = _read_task_file(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(f"{where}: invalid TOML: {printable(str(exc))}") from None
    except RecursionError:
        raise TaskError(f"{where}: invalid TOML: nested more than {MAX_NESTING} levels deep") from None
    doc = resolve_data_path(doc, path.parent)
    return parse_task_dict(doc, where=where, default_name=path.stem, path=str(path), strict_name=True)


def resolve_data_path(doc: Any, folder: Path) -> Any:
    """Make a relative ``[dataset] path`` absolute against the task file's folder."""
    dataset = doc.get("dataset") if isinstance(doc, dict) else None
    if isinstance(dataset, dict) and isinstance(dataset.get("path"), str) and dataset["path"]:
        p = Path(dataset["path"]).expanduser()
        if not p.is_absolute():
            doc = {**doc, "dataset": {**dataset, "path": os.path.normpath(folder.resolve() / p)}}
    return doc


def check_task_name(name: Any, where: str = "task", strict: bool = True) -> str:
    """``name`` when it is a safe task name (it names files, the MLflow experiment, and is printed).

    Args:
        name: The name.
        where: The file (or ``task``) for the message.
        strict: Task files and ``nasw task init``: 1 to :data:`MAX_NAME_LENGTH` letters, digits
            and :data:`NAME_PUNCTUATION`, starting with a letter or digit. Otherwise (a task
            recorded with a search by an earlier version): printable, without spaces or slashes.

    Raises:
        TaskError: Saying what a name may hold.
    """
    ok = isinstance(name, str) and 0 < len(name) <= MAX_NAME_LENGTH
    if ok and strict:
        ok = name[0].isalnum() and all(c.isalnum() or c in NAME_PUNCTUATION for c in name)
    elif ok:
        ok = name.isprintable() and not any(c in name for c in "/\\ ")
    if not ok:
        raise TaskError(
            f"{where}: the task name must be 1 to {MAX_NAME_LENGTH} letters, digits, '-', '_' or '.' (without spaces "
            f"or slashes), starting with a letter or digit; got {_shown(name)}"
        )
    return name


def _nesting(doc: Any) -> int:
    """How deep tables and arrays nest in ``doc`` (counted without recursion, up to one past
    :data:`MAX_NESTING`)."""
    deepest, stack = 0, [(doc, 1)]
    while stack and deepest <= MAX_NESTING:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _finite(x: float) -> bool:
    return not isinstance(x, float) or math.isfinite(x)  # an int is finite, however large


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _check_number(value: Any, where: str, table: str, key: str) -> None:
    """A numeric setting of :data:`_NUMBERS` has its type (booleans are not numbers) and range."""
    integer, low, high, low_in, high_in = _NUMBERS[table, key]
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    ok = ok and _finite(value) and (low <= value if low_in else low < value)
    ok = ok and (value <= high if high_in else value < high)
    if ok:
        return
    if integer and low == 1:
        wanted = f"a positive integer (at most {_fmt(high)})"
    elif (low, high, low_in, high_in) == (0, 1, False, False):
        wanted = "a fraction in (0, 1)"
    else:
        interval = f"{'[' if low_in else '('}{_fmt(low)}, {_fmt(high)}{']' if high_in else ')'}"
        wanted = f"{'an integer' if integer else 'a finite number'} in {interval}"
    raise TaskError(f"{where}: [{table}] {key} must be {wanted}, got {_shown(value)}")


def parse_task_dict(
    doc: Any, where: str = "task", default_name: str = "", path: str = "", *, strict_name: bool = False
) -> Task:
    """Validate a task given as a dict (a parsed file, or a spec recorded with a search).

    Args:
        doc: The task's tables.
        where: The file (or ``task``) for messages.
        default_name: The name when ``doc`` has none (a file's stem).
        path: Where the file was read from.
        strict_name: Hold the name to the charset of task files (see :func:`check_task_name`);
            off for specs recorded by earlier versions.

    Raises:
        TaskError: One line naming the field and what it must be.
    """
    if not isinstance(doc, dict):
        raise TaskError(f"{where}: a task must be a table, got {type(doc).__name__}")
    if _nesting(doc) > MAX_NESTING:
        raise TaskError(f"{where}: tables and arrays nest more than {MAX_NESTING} levels deep")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise TaskError(f"{where}: unknown keys {_shown(sorted(unknown))}; expected some of {sorted(_TOP_KEYS)}")
    name = check_task_name(doc.get("name", default_name), where, strict=strict_name)
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
    tables = {"training": training, "split": split}
    for table, key in _NUMBERS:
        if key in tables[table]:
            _check_number(tables[table][key], where, table, key)
    if split.get("test", 0) + split.get("valid", 0) >= 1:
        raise TaskError(f"{where}: [split] test and valid together must leave examples for training (sum < 1)")
    if "device" in training and not isinstance(training["device"], str):
        got = _shown(training["device"])
        raise TaskError(f"{where}: [training] device must be a string ('cpu', 'cuda'), got {got}")
    fidelity = _table(doc, "fidelity", where)
    for key, high in _FIDELITY_HIGH.items():
        value = fidelity.get(key)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not (_finite(v) and v <= high):
                raise TaskError(f"{where}: [fidelity] {key} must be at most {high}, got {_shown(value)}")
    meta = _table(doc, "meta_features", where)
    bad = {k: v for k, v in meta.items() if isinstance(v, bool) or not (isinstance(v, (int, float)) and abs(v) < 1e300)}
    if bad:
        raise TaskError(f"{where}: [meta_features] values must be numbers (finite), got {_shown(bad)}")
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
        fidelity=fidelity,
        path=path,
    )
