"""bench/quality.py's variant names: NAME@LR is NAME at another learning rate, applied last."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import quality as Q  # noqa: E402

from grporec.config import load_config  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "office-tiny.yaml"


def test_variant_at_a_learning_rate_overrides_its_own_rate():
    plain = Q.variant_overrides("add_gt+rule_prefix+sample+lora")
    assert plain == Q.BASE + Q.VARIANTS["add_gt+rule_prefix+sample+lora"]
    at = Q.variant_overrides("add_gt+rule_prefix+sample+lora@1e-3")
    assert at == plain + ["train.lr=1e-3"]
    assert load_config(CONFIG, at).train.lr == 1e-3  # the variant's own train.lr=2e-3 comes first and loses
    assert load_config(CONFIG, plain).train.lr == 2e-3


@pytest.mark.parametrize("name, says", [("nope", "unknown 'nope'"), ("add_gt@fast", "'fast' after @")])
def test_bad_variant_names_stop_with_the_reason(name, says):
    with pytest.raises(SystemExit, match=says):
        Q.variant_overrides(name)
