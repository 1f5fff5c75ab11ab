"""Workshop set-up check: is this laptop ready for the course? One command, under a minute.

Run it from the repository with the course's virtual environment active::

    python prunefl_lite/setup_check.py

(run as a file, not with ``-m``, so that a broken TensorFlow or tensorflow-model-optimization is
reported by name instead of failing inside the package's own import). It checks the Python
version (3.11, 3.12 or 3.13), imports every package of the stack (naming the one that is
broken), starts a Jupyter kernel and runs a 3-round federated pruning run on the digits data.
It reads no notebook, so chapters a learner has run and saved do not matter. Exit status 0
means ready; 1 means a check failed, and the line marked FAILED names the broken part and what
to do.
"""

import importlib
import os
import pathlib
import subprocess
import sys
import time

if __name__ == "__main__" and pathlib.Path(sys.path[0]).name == "prunefl_lite":
    # run as a file: put the repository, not the package folder, first on the import path
    sys.path[0] = str(pathlib.Path(sys.path[0]).parent)

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # as the course package does, before TensorFlow
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: (distribution name as pip knows it, module to import), in import order.
STACK = (
    ("numpy", "numpy"),
    ("tensorflow", "tensorflow"),
    ("tf-keras", "tf_keras"),
    ("tensorflow-model-optimization", "tensorflow_model_optimization"),
    ("scikit-learn", "sklearn"),
    ("matplotlib", "matplotlib"),
    ("jupyter-book", "jupyter_book"),
    ("myst-nb", "myst_nb"),
    ("jupyterlab", "jupyterlab"),
    ("ipykernel", "ipykernel"),
    ("nbval", "nbval"),
    ("dp-accounting", "dp_accounting"),
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("flwr", "flwr"),
    ("prunefl_lite (this course's package)", "prunefl_lite"),
)

FIX = "reinstall with: pip install -r requirements.txt (in the course's virtual environment)"


class CheckFailed(Exception):
    """A check failed; the message names the broken part."""


#: The Python versions the pinned stack installs and runs on (pyproject's requires-python).
PYTHONS = ((3, 11), (3, 12), (3, 13))


def check_python(version_info=None):
    """The course runs on Python 3.11, 3.12 and 3.13 (the pinned stack's range).

    Example:
        >>> check_python((3, 13, 0))
        '3.13.0'
        >>> check_python((3, 10, 12))
        Traceback (most recent call last):
        ...
        prunefl_lite.setup_check.CheckFailed: Python must be 3.11, 3.12 or 3.13, got 3.10.12; ...
    """
    version_info = tuple(sys.version_info if version_info is None else version_info)
    found = ".".join(str(part) for part in version_info[:3])
    if version_info[:2] not in PYTHONS:
        raise CheckFailed(f"Python must be 3.11, 3.12 or 3.13, got {found}; make the course's "
                          "virtual environment with one of them (python3.13 -m venv .venv)")
    return found


def fix_hint(prefix=None, base_prefix=None, folder=None):
    """What to do about a missing package: activate the environment, or reinstall.

    Outside any virtual environment, with the course's `.venv` next to this file's package,
    the likely cause is an environment that is not activated (a fresh terminal), not a broken
    install: re-downloading 0.9 GB would not help.

    Example:
        >>> import pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp()); (folder / ".venv").mkdir()
        >>> fix_hint("/usr", "/usr", folder).startswith("activate the course's environment")
        True
        >>> fix_hint("/x/.venv", "/usr", folder) == FIX
        True
    """
    prefix = sys.prefix if prefix is None else prefix
    base_prefix = sys.base_prefix if base_prefix is None else base_prefix
    folder = pathlib.Path(__file__).resolve().parents[1] if folder is None else pathlib.Path(folder)
    if prefix == base_prefix and (folder / ".venv").is_dir():
        python = folder / ".venv" / ("Scripts" if os.name == "nt" else "bin")
        return (f"activate the course's environment first (. .venv/bin/activate), or run "
                f"{python / 'python'} prunefl_lite/setup_check.py; this Python "
                f"({sys.executable}) is not in it")
    return FIX


def check_import(distribution, module):
    """Import one module of the stack; return its version."""
    try:
        imported = _quiet_import(module)
    except Exception as error:  # noqa: BLE001 (any failure to import is the finding)
        raise CheckFailed(
            f"cannot be imported ({type(error).__name__}: {error}); {fix_hint()}"
        ) from error
    top = sys.modules.get(module.split(".")[0], imported)
    return str(getattr(top, "__version__", "ok"))


def _quiet_import(module):
    """Import with file descriptor 2 silenced (TensorFlow's C++ start-up lines go there)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        imported = importlib.import_module(module)
        if module == "tensorflow":
            imported.config.list_logical_devices()  # its CUDA probe logs to fd 2 on first use
        return imported
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def check_kernel(timeout=60):
    """Start a python3 Jupyter kernel, run one line in it, and shut it down."""
    from jupyter_client.manager import start_new_kernel

    try:
        manager, client = start_new_kernel(  # the kernel's own log lines go nowhere
            kernel_name="python3", startup_timeout=timeout,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    except Exception as error:  # noqa: BLE001
        raise CheckFailed(f"the Jupyter kernel python3 does not start ({error}); {FIX}") from error
    try:
        reply = client.execute_interactive(
            "print(6 * 7)", timeout=timeout, output_hook=lambda message: None
        )
        if reply["content"]["status"] != "ok":
            raise CheckFailed(f"the python3 kernel failed to run a line: {reply['content']}")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return "python3"


def check_federated_pruning():
    """Three rounds of FedAvg with a server-side global mask on the digits data."""
    import prunefl_lite as pfl

    ds = pfl.data.load_dataset("digits")
    parts = pfl.data.partition_iid(ds.y_train, 4, seed=0)
    clients = pfl.data.split_clients(ds.x_train, ds.y_train, parts)
    config = pfl.FedConfig(num_rounds=3, clients_per_round=4, seed=0)
    history = pfl.run_fedavg(
        lambda: pfl.models.mlp_2nn(ds.input_shape, ds.num_classes),
        clients, (ds.x_test, ds.y_test), config,
        pruning=pfl.pruning.GlobalPruning(0.5, end_round=2),
    )
    sparsity = history.metric("sparsity")[-1]
    if not 0.45 <= sparsity <= 0.55:
        raise CheckFailed(f"federated pruning reached sparsity {sparsity:.2f}, expected 0.50")
    return f"3 rounds, sparsity {sparsity:.0%}, test accuracy {history.metric('accuracy')[-1]:.0%}"


def checks():
    """The checks in order, as (label, function) pairs."""
    found = [("Python", check_python)]
    found += [(name, lambda d=name, m=module: check_import(d, m)) for name, module in STACK]
    found += [("Jupyter kernel", check_kernel), ("federated pruning run", check_federated_pruning)]
    return found


def main():
    """Run every check; print one line each; return the exit status (0 = ready)."""
    start = time.perf_counter()
    for label, check in checks():
        tick = time.perf_counter()
        try:
            detail = check()
        except CheckFailed as failure:
            print(f"FAILED  {label}: {failure}", flush=True)
            print("The set-up is NOT ready (see the line above).", flush=True)
            return 1
        print(f"ok      {label}: {detail} ({time.perf_counter() - tick:.1f} s)", flush=True)
    print(f"Ready: every check passed in {time.perf_counter() - start:.0f} s.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
