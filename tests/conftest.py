import os
from pathlib import Path

import pytest
import torch

# Keep CPU tests deterministic and within the 2-core budget.
torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def scared_640(shared_data):
    """The real SCARED sample (skips the test when it is absent)."""
    root = shared_data / "scared_640"
    if not (root / "endoscope_calibration.yaml").is_file():
        pytest.skip("real SCARED sample (shared/data/scared_640) not present")
    return root
