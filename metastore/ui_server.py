"""The MLflow UI server of ``nasw ui``, tied to the process that started it.

``mlflow ui`` starts a tree of processes (uvicorn and its workers, a job runner with its
consumers); when ``mlflow ui`` alone is stopped, the others keep serving the port. So ``nasw ui``
runs this module as its child::

    python -m metastore.ui_server --parent PID --pid-file PATH [-- mlflow ui options]

and this supervisor runs ``mlflow ui`` in a session (process group) of its own and takes the
whole group down (SIGTERM, then SIGKILL after :data:`GRACE_S`) when

* it gets SIGTERM, SIGINT or SIGHUP (``nasw ui`` forwards the signals it gets to it, and waits
  until the server is gone), or
* its parent is gone however it ended, even by SIGKILL: on Linux the kernel tells it at once
  (``PR_SET_PDEATHSIG``), elsewhere it notices within half a second (its parent pid changes).

The server gets ``PR_SET_PDEATHSIG`` too, so even a supervisor killed outright stops it.
Nothing here imports mlflow (it is started as a command).

A light server: one uvicorn worker (``--workers 1``, unless the options name another number)
and no job runner (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``: the huey consumers serve
MLflow's GenAI jobs, which nasw never starts). It answers in a few seconds rather than a
minute, with 2 processes rather than about 14. Once the REST API answers, the supervisor prints
how long it took and the URL of the runs table of the newest search's task (:func:`newest_url`).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from metastore.schema import KIND_SEARCH, TAG_KIND

#: Seconds the server's processes get to stop after SIGTERM before they are killed.
GRACE_S = 10.0
#: How often the supervisor checks its parent and the server.
POLL_S = 0.5
#: Seconds the supervisor waits for the REST API to answer before it stops saying when it does.
READY_WAIT_S = 300.0
#: The environment of a light server: no job runner (MLflow's GenAI jobs; nasw starts none).
LIGHT_ENV: Mapping[str, str] = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_SERVER_JOB_ENABLE_PERIODIC_TASKS": "false",
    # the notes of the server's libraries to MLflow's developers, not to users
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore:starlette.middleware.wsgi is deprecated",
}
#: The UI's view of an experiment's runs as a table, and as charts (compare searches' progress).
RUNS_VIEW = "#/experiments/{experiment}/runs?workflowType=machine_learning"
CHART_VIEW = RUNS_VIEW + "&compareRunsMode=CHART"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_STOP_SIGNALS = tuple(
    s
    for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGINT", None), getattr(signal, "SIGHUP", None))
    if s is not None
)


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent ends (Linux only).

    Returns:
        Whether it is armed (False elsewhere, or when ``prctl`` is unavailable).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def mlflow_ui_supports(option: str) -> bool:
    """Whether the installed ``mlflow ui`` / ``mlflow server`` has ``option`` (looked up in the
    source of its command line, where click options are declared, without importing mlflow,
    which takes seconds)."""
    try:
        spec = importlib.util.find_spec("mlflow")
        folders = list(spec.submodule_search_locations or []) if spec else []
    except (ImportError, ValueError):
        return False
    for folder in folders:
        for name in ("cli/__init__.py", "cli.py", "utils/cli_args.py"):
            try:
                if f'"{option}"' in Path(folder, name).read_text(encoding="utf-8"):
                    return True
            except OSError:
                continue
    return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(child: subprocess.Popen, grace_s: float = GRACE_S) -> None:
    """SIGTERM the child's process group, wait up to ``grace_s`` for all of it to end, then
    SIGKILL what is left."""
    pgid = child.pid  # the child leads its own session
    for sig, wait in ((signal.SIGTERM, grace_s), (getattr(signal, "SIGKILL", signal.SIGTERM), 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            child.poll()  # reap the leader, or the group never looks empty
            if not _group_alive(pgid):
                return
            time.sleep(0.1)
    child.poll()


def light_args(mlflow_args: Sequence[str]) -> list[str]:
    """``mlflow ui`` options with one worker unless they say how many (``--workers``/``-w``)."""
    args = list(mlflow_args)
    named = any(a in ("--workers", "-w") or a.startswith("--workers=") for a in args)
    if not named and mlflow_ui_supports("--workers"):
        args += ["--workers", "1"]
    return args


def _option(args: Sequence[str], names: Sequence[str], default: str) -> str:
    for i, a in enumerate(args):
        for name in names:
            if a == name and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(name + "="):
                return a.split("=", 1)[1]
    return default


def base_url(mlflow_args: Sequence[str]) -> str:
    """The server's address from its options (``--host``, ``--port``; a wildcard host is
    reached on the loopback)."""
    host = _option(mlflow_args, ("--host", "-h"), "127.0.0.1")
    port = _option(mlflow_args, ("--port", "-p"), "5000")
    if host in ("0.0.0.0", "", "::", "[::]"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _post(url: str, body: Mapping, timeout: float) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - our own server's URL
        return json.loads(resp.read().decode() or "{}")


def newest_experiment(base: str, timeout: float = 2.0) -> str | None:
    """The experiment (task) of the newest search, read through the server's REST API (what the
    UI itself reads); None when there is none. Raises ``OSError`` / ``ValueError`` while the
    server does not answer."""
    api = f"{base}/api/2.0/mlflow"
    found = _post(f"{api}/experiments/search", {"max_results": 1000}, timeout)
    ids = [e["experiment_id"] for e in found.get("experiments", []) if e.get("lifecycle_stage", "active") == "active"]
    if not ids:
        return None
    body = {
        "experiment_ids": ids,
        "filter": f"tags.`{TAG_KIND}` = '{KIND_SEARCH}'",
        "order_by": ["attributes.start_time DESC"],
        "max_results": 1,
    }
    runs = _post(f"{api}/runs/search", body, timeout).get("runs", [])
    return runs[0]["info"]["experiment_id"] if runs else None


def newest_url(base: str, timeout: float = 2.0) -> str:
    """The UI's runs table of the newest search's task (the experiments list without one)."""
    experiment = newest_experiment(base, timeout)
    if experiment is None:
        return f"{base}/#/experiments?workflowType=machine_learning"
    return f"{base}/{RUNS_VIEW.format(experiment=experiment)}"


def serve(parent: int, mlflow_args: Sequence[str], pid_file: str | None = None) -> int:
    """Run ``mlflow ui MLFLOW_ARGS`` until it ends, a stop signal comes or ``parent`` is gone.

    Returns:
        The server's exit code when it ended by itself (e.g. the port is taken); 0 when it was
        stopped.
    """
    die_with_parent(signal.SIGTERM)
    if os.getppid() != parent:  # the parent ended before this process could watch it
        return 0
    stopping: list[int] = []

    def on_signal(signum, frame) -> None:
        stopping.append(signum)

    for sig in _STOP_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:  # an ignored SIGHUP (nohup) stays ignored
            signal.signal(sig, on_signal)
    if pid_file:
        tmp = f"{pid_file}.{os.getpid()}"
        Path(tmp).write_text(str(os.getpid()), encoding="ascii")
        os.replace(tmp, pid_file)
    started = time.monotonic()
    args = light_args(mlflow_args)
    child = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", *args],
        start_new_session=True,
        preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
        env={**os.environ, **LIGHT_ENV},
    )
    code = 0
    ready = False
    while True:
        try:
            code = child.wait(timeout=POLL_S)
            break
        except subprocess.TimeoutExpired:
            pass
        if stopping or os.getppid() != parent:
            code = 0
            break
        if not ready and time.monotonic() - started < READY_WAIT_S:
            ready = _say_when_ready(base_url(args), started)
    stop_group(child)  # also what the server left behind when it ended by itself
    return code


def _say_when_ready(base: str, started: float) -> bool:
    """Print, once the REST API answers, how long the server took and where to look."""
    try:
        url = newest_url(base, timeout=POLL_S)
    except urllib.error.HTTPError:  # it answers, but not to this probe (e.g. --allowed-hosts)
        url = f"{base}/#/experiments?workflowType=machine_learning"
    except (OSError, ValueError, KeyError, TypeError):
        return False
    print(f"MLflow UI ready after {time.monotonic() - started:.1f} s: {url}", flush=True)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m metastore.ui_server --parent PID [--pid-file PATH] -- MLFLOW_UI_OPTIONS``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(
        prog="python -m metastore.ui_server", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    parser.add_argument("--parent", type=int, required=True, help="pid of the process the server goes with")
    parser.add_argument("--pid-file", default=None, help="write this process's pid here once it runs")
    args = parser.parse_args(argv[:split])
    rest = argv[split + 1 :]
    if "--allowed-hosts" in rest and not mlflow_ui_supports("--allowed-hosts"):
        i = rest.index("--allowed-hosts")
        del rest[i : i + 2]
        print("note: this MLflow has no --allowed-hosts; the UI accepts any Host header", file=sys.stderr)
    return serve(args.parent, rest, args.pid_file)


if __name__ == "__main__":
    sys.exit(main())
