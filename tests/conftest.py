import importlib.util
import os
from pathlib import Path

import pytest

import engine  # noqa: F401  (before any test module loads numpy: engine sets OpenBLAS to one thread, as the app runs)

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACETRACK_SHARED", ROOT.parent / "shared")) / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def script():
    """A module from scripts/ by its name (they are run as files, not imported as a package)."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


@pytest.fixture(autouse=True)
def _own_config(tmp_path_factory, monkeypatch):
    """Each test remembers studio settings in its own folder, never in the user's ~/.config (app.settings)."""
    monkeypatch.setenv("FACETRACK_CONFIG", str(tmp_path_factory.mktemp("config")))


@pytest.fixture
def one_torch_thread():
    """1 torch thread: on a shared 2-core CPU, 2 threads make the teacher 10x+ slower. Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
