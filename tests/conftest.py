import warnings

import pytest
import torch

import attnfer
from attnfer.models import BatchDependentWarning

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def build(name: str, **kwargs):
    """create_model without the (expected, separately tested) batch-attention warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BatchDependentWarning)
        return attnfer.create_model(name, **kwargs)
