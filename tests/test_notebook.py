"""The quickstart notebook executes top to bottom (nbclient), so it cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_executes(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install -e '.[dev]')")
    nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install -e '.[dev]')")
    pytest.importorskip("ipykernel", reason="ipykernel (the notebook's python3 kernel) is not installed")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    # Raises CellExecutionError (with the failing cell and traceback) if any cell fails.
    nbclient.NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    images = [o for o in outputs if "data" in o and "image/png" in o["data"]]
    assert len(images) == 5  # two map renders, learning curves, action distributions, a cascade tree
    text = "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")
    for kind in ("random", "scripted", "trained"):
        assert f"{kind:<9} {{'artist_collective': " in text
    assert not list(tmp_path.iterdir())  # the notebook writes its run into a temp folder, not the cwd
