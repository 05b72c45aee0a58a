"""The notebooks in notebooks/ run top to bottom, offline, and are stored without outputs.

Each notebook runs in a fresh kernel of this interpreter (the venv's ipykernel), with its state in
tmp_path, the session's embedding-model cache, no OpenAI settings, and a guard that records any
connection leaving the machine: a cell error or a non-loopback connection fails the test.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import nbclient
import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"
EXPECTED = ["01_quickstart", "02_memory", "03_group_chat", "04_testing_with_replays"]
TIMEOUT_S = 300

# Run before the notebook's first cell (it imports only `socket`, so a notebook's own first cell,
# such as `httpx2.alias_httpx()`, still comes before anything imports httpx).
GUARD = """
import socket as _socket

_NETWORK_ATTEMPTS = []
_connect = _socket.socket.connect


def _loopback_only(self, address):
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and host not in ("127.0.0.1", "::1", "localhost"):
        _NETWORK_ATTEMPTS.append(address)
        raise OSError(f"notebook tests are offline: connection to {address} refused")
    return _connect(self, address)


_socket.socket.connect = _loopback_only
"""

# Run after the notebook's last cell.
CHECK = """
import sys as _sys

assert not _NETWORK_ATTEMPTS, ("the notebook tried to reach the network", _NETWORK_ATTEMPTS)
assert _sys.executable == EXECUTABLE, ("the kernel is not this venv's python", _sys.executable)
"""

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_the_four_notebooks_are_there():
    missing = set(EXPECTED) - {path.stem for path in notebooks()}
    assert not missing, f"missing from {NOTEBOOKS}: {sorted(missing)}"


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path: Path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.cells[0].cell_type == "markdown", "a notebook starts by saying what it shows"
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {index} is stored with outputs"
            assert cell.execution_count is None, f"{path.name} cell {index} is stored with a count"


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.stem)
def test_notebook_runs_offline(path: Path, tmp_path: Path, cache_dir: Path):
    notebook = nbformat.read(path, as_version=4)
    own_cells = len(notebook.cells)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(GUARD))
    notebook.cells.append(nbformat.v4.new_code_cell(CHECK.replace("EXECUTABLE", repr(sys.executable))))
    # The offline model (no OpenAI settings), default memory, state in tmp_path, the shared model cache.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAINSTACK_", "OPENAI_"))}
    env.update(BRAINSTACK_HOME=str(tmp_path / "home"), BRAINSTACK_CACHE_DIR=str(cache_dir))
    client = nbclient.NotebookClient(
        notebook,
        timeout=TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},  # the kernel's working directory
    )
    start = time.perf_counter()
    try:
        client.execute(env=env)
    except CellExecutionError:
        pytest.fail(failure_report(path, notebook, own_cells), pytrace=False)
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")


def failure_report(path: Path, notebook, own_cells: int) -> str:
    """The failing cell's source and its error (cell numbers as in the stored notebook)."""
    for index, cell in enumerate(notebook.cells):
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            if index == 0:
                where = "the test's network guard"
            elif index > own_cells:
                where = "the test's final check"
            else:
                where = f"cell {index} of {own_cells}"
            error = errors[0]
            traceback = ANSI.sub("", "\n".join(error.get("traceback", [])))
            return (
                f"{path.name}, {where} failed:\n{cell.source}\n\n"
                f"{error.get('ename')}: {error.get('evalue')}\n{traceback}"
            )
    return f"{path.name} failed without an error output"
