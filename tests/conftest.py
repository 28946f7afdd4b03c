import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACETRACK_SHARED", ROOT.parent / "shared")) / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture(autouse=True)
def _own_config(tmp_path_factory, monkeypatch):
    """Each test remembers studio settings in its own folder, never in the user's ~/.config (app.settings)."""
    monkeypatch.setenv("FACETRACK_CONFIG", str(tmp_path_factory.mktemp("config")))
