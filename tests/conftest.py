import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np
import pytest

from support import fixture_path


@pytest.fixture(scope="module")
def reference():
  """The original model's inputs and outputs on the fixture checkpoint (modeling/outputs.npz)."""
  with np.load(fixture_path("modeling", "outputs.npz")) as outputs:
    return dict(outputs)
