"""Reading artifact files back safely: whoever can write a store can plant files in it.

An artifact read back from a local folder (a SQLite store's ``artifacts/`` folder, or the
temporary folder a server's artifact is downloaded into) must be

* a regular file (not a device, FIFO or folder) reached without following a symbolic link: the
  file itself is opened with ``O_NOFOLLOW`` and checked with ``fstat`` on the open descriptor;
* inside the artifact root once every link on the way is resolved (a run whose recorded
  artifact location points elsewhere, or a linked folder that leads out, is refused);
* no larger than a bound (:data:`TEXT_LIMIT` for JSON texts, :data:`WEIGHTS_LIMIT` for weights),
  checked before reading and again while reading;
* for JSON artifacts, parseable (bounded nesting) and of the expected shape
  (:func:`check_json`): ``genotype.json`` an object with a string ``space`` and a ``spec``,
  ``spec.json`` an object.

Anything else raises :class:`UnsafeArtifact`, which the store reads as "no such artifact" (with a
warning naming the run and the reason). Nothing here imports mlflow.
"""

from __future__ import annotations

import json
import os
import stat
from typing import BinaryIO

from metastore import schema

#: Largest JSON artifact read back (genotypes and specs are a few KB; 8 MiB is generous).
TEXT_LIMIT = 8 * 1024 * 1024
#: Largest weights file read back (about 2e9 float32 parameters).
WEIGHTS_LIMIT = 8 * 1024**3

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a planted FIFO must not hang
_BINARY = getattr(os, "O_BINARY", 0)


class UnsafeArtifact(Exception):
    """An artifact file that is not read back (a link, not a regular file, outside the root,
    too large, or not the JSON it should be); the message says why."""


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives
        return False


def open_regular(path: str, root: str, limit: int) -> BinaryIO:
    """Open ``path`` for reading if it is a regular file inside ``root``, reached without a link
    as its last component, and at most ``limit`` bytes long.

    Raises:
        FileNotFoundError: There is no such file.
        UnsafeArtifact: It exists but must not be read (see the module docstring).
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UnsafeArtifact(f"{path} cannot be inspected: {exc.strerror or exc}") from None
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeArtifact(f"{path} is a symbolic link; links are never followed")
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeArtifact(f"{path} is not a regular file")
    folder = os.path.dirname(os.path.abspath(path))
    if not _inside(os.path.realpath(folder), os.path.realpath(root)):
        raise UnsafeArtifact(f"{path} lies outside the artifact folder {root}")
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _BINARY)
    except FileNotFoundError:
        raise
    except OSError as exc:  # ELOOP: it became a link since lstat
        raise UnsafeArtifact(f"{path} cannot be opened safely: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeArtifact(f"{path} is not a regular file")
        if info.st_size > limit:
            raise UnsafeArtifact(f"{path} has {info.st_size:,} bytes, more than the {limit:,} allowed")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: str, root: str, limit: int = TEXT_LIMIT) -> bytes:
    """The bytes of a file :func:`open_regular` accepts (never more than ``limit``, even if the
    file grows while it is read).

    Raises:
        FileNotFoundError: There is no such file.
        UnsafeArtifact: It must not be read.
    """
    with open_regular(path, root, limit) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise UnsafeArtifact(f"{path} grew beyond the {limit:,} bytes allowed while it was read")
    return data


def check_json(name: str, data: bytes) -> str:
    """The text of a JSON artifact named ``name`` if it parses and has the expected shape.

    Raises:
        UnsafeArtifact: Not UTF-8, not JSON (or nested too deeply), or not the expected shape.
    """
    try:
        text = data.decode("utf-8")
        value = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UnsafeArtifact(f"{name} is not valid JSON ({type(exc).__name__})") from None
    if name == schema.GENOTYPE_ARTIFACT:
        if not (isinstance(value, dict) and isinstance(value.get("space"), str) and "spec" in value):
            raise UnsafeArtifact(f"{name} is not a genotype (an object with 'space' and 'spec')")
    elif not isinstance(value, dict):
        raise UnsafeArtifact(f"{name} is not a JSON object")
    return text


def read_json_artifact(path: str, root: str, name: str, limit: int = TEXT_LIMIT) -> str:
    """:func:`read_bounded` then :func:`check_json`: the artifact's text, checked."""
    return check_json(name, read_bounded(path, root, limit))
