"""The memory-limited runner itself: a child forked after the parent used torch's thread pool still runs."""
import torch

from tests.robustness.conftest import run_limited


def _work():
    y = torch.full((2, 3, 500, 500), -5.0)
    return int((y > 0).sum())


def test_child_runs_torch_after_the_parent_used_its_threads():
    a = torch.randn(1500, 1500)
    (a @ a).sum()  # the parent's OpenMP pool is now populated
    outcome, result = run_limited(_work, budget=256 << 20, timeout=60)
    assert (outcome, result) == ("returned", "0")
