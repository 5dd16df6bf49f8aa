import numpy as np
import pytest


@pytest.fixture(scope="session")
def body_model():
    from posesdf_ros.data.body import BodyModel

    return BodyModel()


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(1234)
