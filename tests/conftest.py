import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def _private_nonce_dir(tmp_path_factory, monkeypatch):
    """Each test gets its own local nonce cache (cli/nonces.py): test networks share keys and
    chain ids, so a shared ~/.cxl/nonces would carry nonces from one test (or worktree) to another."""
    monkeypatch.setenv("CXL_NONCE_DIR", str(tmp_path_factory.mktemp("nonces")))


@pytest.fixture(autouse=True)
def _private_cxl_home(tmp_path_factory, monkeypatch):
    """Each test gets its own $CXL_HOME (the light client's remembered genesis and its cache of
    verified validator sets, cli/light.py) and no CXL_GENESIS from the environment."""
    monkeypatch.setenv("CXL_HOME", str(tmp_path_factory.mktemp("cxlhome")))
    monkeypatch.delenv("CXL_GENESIS", raising=False)
