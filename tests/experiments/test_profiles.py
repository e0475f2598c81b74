"""Every experiment of every kind resolves, for every profile, to a frozen config of its own: written once with
``Profile.pick``, stamped with its name and profile, valid, plain data, and sharing no dict or list with any other
config (the kinds' helpers reuse module-level constants such as the analysis options)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from nnboundary.experiments import (PROFILES, ExperimentConfig, KindConfig, Profile, experiment_kind,
                                    get_experiment, list_experiments)
from nnboundary.experiments.registry import get_kind

ALL = [(name, profile) for name in list_experiments(kind=None) for profile in PROFILES]


def _containers(x):
    """Every dict and list inside ``x``, outermost first."""
    if isinstance(x, (dict, list)):
        yield x
        for v in (x.values() if isinstance(x, dict) else x):
            yield from _containers(v)


def test_pick_chooses_by_profile_and_smoke_defaults_to_quick() -> None:
    assert [Profile(p).pick(paper=3, quick=2, smoke=1) for p in PROFILES] == [1, 2, 3]
    assert Profile("smoke").pick(paper=3, quick=2) == 2
    assert Profile("smoke").pick(paper=3, quick=2, smoke=None) is None       # None is a value, not "as quick"


@pytest.mark.parametrize("name, profile", ALL)
def test_every_config_is_frozen_stamped_valid_and_plain_data(name: str, profile: str) -> None:
    cfg = get_experiment(name, profile)
    assert dataclasses.is_dataclass(cfg) and cfg.name == name and cfg.profile == profile and cfg.title
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "other"
    kind = experiment_kind(name)
    if kind == "simulated":
        assert isinstance(cfg, ExperimentConfig)
        cfg.validate()
    else:
        assert isinstance(cfg, KindConfig) and cfg.kind == kind and cfg.seed is None
        spec = get_kind(kind)
        assert cfg.settings[spec.name_key] == name and cfg.settings["profile"] == profile
        assert cfg.settings["title"] == cfg.title
        spec.validate(cfg.settings)
        with pytest.raises(ValueError, match="not of kind"):
            get_experiment(name, profile, kind="simulated")
    assert json.loads(json.dumps(cfg.to_dict(), allow_nan=False)) == cfg.to_dict()


def test_no_two_configs_share_a_dict_or_a_list() -> None:
    kinds = [(n, p) for n, p in ALL if experiment_kind(n) != "simulated"]
    before = {key: get_experiment(*key).to_dict() for key in kinds}
    resolved = [get_experiment(*key) for key in kinds]
    for cfg in resolved:                        # vandalise every container of one resolution ...
        for box in list(_containers(cfg.settings)):
            if isinstance(box, dict):
                box["vandal"] = True
            else:
                box.append("vandal")
    for key in kinds:                           # ... and every later resolution is untouched
        assert get_experiment(*key).to_dict() == before[key], key
    ids = [id(box) for cfg in resolved for box in _containers(cfg.settings)]
    assert len(ids) == len(set(ids))           # and no container is shared between two configs
