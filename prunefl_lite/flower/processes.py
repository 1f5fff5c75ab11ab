"""Processes of a local deployment, on any operating system (psutil): start, stop, watchdog.

Each process starts in its own process group (POSIX: a new session; Windows: a new process
group), so a terminal's Ctrl+C does not reach it and `stop` can end it with everything it
started: the whole tree is collected (psutil follows parent links) before anything is
signalled, so children that left their group (Flower's SuperExec starts its own session)
are stopped too. A watchdog process stops the deployment when its owner dies without
calling `stop` (a killed kernel skips `atexit`).
"""

import os
import subprocess
import sys
from pathlib import Path

import psutil

__all__ = ["alive", "executable", "spawn", "start_watchdog", "stop_tree"]


def executable(name):
    """Path of a console script installed beside this Python interpreter (e.g. `flwr`).

    A kernel started without activating the virtual environment (VS Code, a JupyterLab
    installed elsewhere) has the environment's Python but not its `bin` folder on PATH, so
    the scripts are looked up next to `sys.executable`, never on PATH.

    Raises:
        FileNotFoundError: If the script is not there (naming the folder and the fix).
    """
    folder = Path(sys.executable).parent
    for candidate in (folder / name, folder / f"{name}.exe"):
        if candidate.exists():
            return str(candidate)
    raise FileNotFoundError(f"{name} not found beside {sys.executable}: install the course's "
                            f"requirements into this interpreter (pip install -r "
                            f"requirements.txt)")


def environment(extra):
    """`os.environ` plus `extra`, with this interpreter's script folder first on PATH.

    Flower's processes start further processes by name (the SuperNode starts
    `flower-superexec`, which starts `flwr-clientapp`), so the folder that holds them must be
    on the PATH they inherit.
    """
    env = {**os.environ, **extra}
    folder = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([folder, env.get("PATH", "")]) if env.get("PATH") else folder
    return env


def spawn(command, log_path, cwd, env):
    """Start `command` in its own process group, stdout and stderr to `log_path`."""
    group = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt"
             else {"start_new_session": True})
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=cwd, env=env, **group)


def _tree(pid):
    """The process `pid` and all its descendants (those alive now), as psutil objects."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop_tree(pids, timeout=10.0):
    """Terminate every process in the trees of `pids`, then kill what is left.

    The trees are collected first, so a child whose parent exits first is still stopped.

    Returns:
        The set of PIDs that were signalled.
    """
    processes = {p.pid: p for pid in pids for p in _tree(pid)}
    for process in processes.values():
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, left = psutil.wait_procs(list(processes.values()), timeout=timeout)
    for process in left:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(left, timeout=5.0)
    return set(processes)


def alive(pids):
    """The PIDs among `pids` whose processes still run (zombies excluded).

    Example:
        >>> alive([os.getpid()]) == [os.getpid()]
        True
    """
    running = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.append(pid)
        except psutil.NoSuchProcess:
            pass
    return running


# Stops the deployment's process trees if the Python process that started it dies without
# calling `stop`, then exits. It re-reads the trees every second, so processes started later
# (a ClientApp per message) are stopped too.
_WATCHDOG = """
import sys, time
import psutil
owner, roots = int(sys.argv[1]), [int(p) for p in sys.argv[2:]]
seen = {}
def collect():
    for pid in roots:
        try:
            root = psutil.Process(pid)
            for p in [root, *root.children(recursive=True)]:
                seen[p.pid] = p
        except psutil.NoSuchProcess:
            pass
while psutil.pid_exists(owner):
    collect()
    time.sleep(1.0)
collect()
procs = [p for p in seen.values() if p.is_running()]
for p in procs:
    try:
        p.terminate()
    except psutil.NoSuchProcess:
        pass
_, left = psutil.wait_procs(procs, timeout=10)
for p in left:
    try:
        p.kill()
    except psutil.NoSuchProcess:
        pass
"""


def start_watchdog(owner_pid, pids, log_path, cwd, env):
    """Start the watchdog that stops the trees of `pids` once `owner_pid` has exited."""
    return spawn([sys.executable, "-c", _WATCHDOG, str(owner_pid), *map(str, pids)],
                 log_path, cwd, env)
