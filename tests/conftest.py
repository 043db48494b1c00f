"""Shared test set-up.

Eight host CPU devices are forced before JAX is imported anywhere, so mesh tests can build
(2, 2, 2) meshes on this CPU; single-device code simply uses device 0.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    env = os.environ.get("COREA_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real benchmark files (`../shared/data` beside the checkout, or $COREA_SHARED_DATA)."""
    path = _shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real benchmark data not found at {path} (set COREA_SHARED_DATA)")
    return path
