import numpy as np
import pytest


@pytest.fixture(scope="session")
def body_model():
    from posesdf_ros.data.body import BodyModel

    return BodyModel()


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def train_build(tmp_path_factory, body_model):
    """Two training shapes (seed 0), as `posesdf data build --split train --limit 2` writes them."""
    from posesdf_ros.data.dataset import build_dataset

    out = tmp_path_factory.mktemp("train_build")
    build_dataset(out, "train", limit=2, progress=False, body_model=body_model)
    return out


@pytest.fixture(scope="session")
def test_build(tmp_path_factory, body_model):
    """One sample per cell of the CC and CV protocols (9 samples, seed 1)."""
    from posesdf_ros.data.dataset import build_dataset

    out = tmp_path_factory.mktemp("test_build")
    build_dataset(out, "test", protocol="CC", limit=1, progress=False, body_model=body_model)
    build_dataset(out, "test", protocol="CV", limit=1, progress=False, body_model=body_model)
    return out
