"""Shared fixtures. Real data (../shared/data) is optional: tests needing it skip."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a model hub in tests

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TUMORSCOPE_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (DATA / "figshare" / "meta.csv").is_file():
        pytest.skip(f"real data not found at {DATA} (set TUMORSCOPE_DATA); "
                    "only CI and developer machines have it")
    return DATA


@pytest.fixture(scope="session")
def mat_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fixtures import make_figshare_mat_dataset

    return make_figshare_mat_dataset(tmp_path_factory.mktemp("figshare_mat"))

from conftest_server import server  # noqa: E402,F401  (session fixture: a live server)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Small models run fastest on one thread, the more so beside a busy training job."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
