"""experiments/ablation.py: every row is a valid train.py command that changes what it says."""

from __future__ import annotations

import pytest

import train
from experiments.ablation import BASE, VARIANTS
from training.config import parse_args


def config_of(*flags: str):
    return parse_args([*BASE, *flags], train.__doc__)[0]


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_every_row_is_a_train_command(variant):
    config = config_of(*variant.flags)
    baseline = config_of()
    changed = {k for k, v in vars(config).items() if getattr(baseline, k) != v}
    if variant.name == "small-learned":
        assert changed == set()
    else:
        assert changed, f"{variant.name} changes nothing"


def test_the_combined_rows_differ_only_in_the_feed_forward():
    rows = {v.name: config_of(*v.flags) for v in VARIANTS}
    swiglu, relu2 = rows["small-modern"], rows["small-modern-relu2"]
    assert (swiglu.activation, relu2.activation) == ("swiglu", "relu2")
    differ = {k for k, v in vars(swiglu).items() if getattr(relu2, k) != v}
    assert differ == {"activation"}
    assert relu2.optimizer == "muon" and relu2.positional == "rope" and relu2.dropout == 0
