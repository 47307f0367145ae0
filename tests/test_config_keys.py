"""Every config key is classified by what it changes (lorahpo.config_keys), and the resume
fingerprint and the warm caches are keyed by exactly those keys."""

import pytest
from omegaconf import OmegaConf

from lorahpo.config_keys import Affects, Unclassified, classify, config_key, leaf_keys

from conftest import CONF, compose_cfg

pytestmark = pytest.mark.unit

GROUPS = [g for g in sorted(CONF.iterdir()) if g.is_dir()] + [CONF / "search" / "space"]
OPTIONS = [
    (str(group.relative_to(CONF)), option.stem)
    for group in GROUPS
    for option in sorted(group.glob("*.yaml"))
]


@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_key_of_every_config_group_is_classified(group, option):
    cfg = compose_cfg(f"{group}={option}")
    keys = leaf_keys(cfg)
    assert keys and not any(k.startswith("hydra.") for k in keys)
    unclassified = []
    for key in keys:
        try:
            classify(key)
        except Unclassified:
            unclassified.append(key)
    assert not unclassified, f"add these to lorahpo.config_keys.RULES: {unclassified}"


def test_a_new_key_is_not_classified_by_accident():
    with pytest.raises(Unclassified, match="hardware.new_setting"):
        classify("hardware.new_setting")
    with pytest.raises(Unclassified):
        classify("model.new_setting")
    assert classify("train.anything_new") == Affects.NUMBERS  # a whole-group rule


@pytest.mark.parametrize(
    "override,numbers,base,tokens",
    [
        ("train.lr=0.002", True, False, False),
        ("lora.r=8", True, False, False),
        ("hardware.optim=sgd", True, False, False),
        ("data.max_length=48", True, False, True),
        ("hardware.precision=bf16", True, True, False),
        ("model.seed=3", True, True, True),
        ("hardware.concurrency=3", False, False, False),
        ("logger=tensorboard", False, False, False),
        ("search=tpe", False, False, False),
    ],
)
def test_each_key_changes_what_it_is_classified_as(override, numbers, base, tokens):
    default, changed = compose_cfg(), compose_cfg(override)
    for affects, expected in (
        (Affects.NUMBERS, numbers),
        (Affects.BASE, base),
        (Affects.TOKENS, tokens),
    ):
        differs = config_key(default, affects) != config_key(changed, affects)
        assert differs == expected, (override, affects)


def test_the_keys_are_resolved_values_not_interpolations():
    a = compose_cfg("model.default_lr=0.002")  # reaches the run through train.lr
    b = compose_cfg("train.lr=0.002")
    assert OmegaConf.select(a, "train.lr") == OmegaConf.select(b, "train.lr")
    assert config_key(a, Affects.NUMBERS) == config_key(b, Affects.NUMBERS)
