"""The one config loader: defaults, YAML files with _base_ inheritance, --set overrides, errors."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import yaml

from mot_reid import config
from mot_reid.errors import UserError


@dataclass
class Optim:
    lr: float = 3.5e-4
    milestones: tuple[int, ...] = (40, 70)


@dataclass
class Recipe:
    name: str = "base"
    epochs: int = 120
    margin: float | None = 0.3
    neck: bool = True
    optim: Optim = field(default_factory=Optim)


def test_defaults_without_file():
    assert config.load(Recipe) == Recipe()


def test_yaml_base_inheritance_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("epochs: 60\noptim:\n  lr: 0.001\n  milestones: [20, 40]\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\nname: child\noptim:\n  lr: 0.01\n")
    cfg = config.load(Recipe, tmp_path / "child.yaml", ["optim.milestones=[5, 6]", "margin=null", "neck=false"])
    assert cfg.name == "child" and cfg.epochs == 60
    assert cfg.optim.lr == 0.01 and cfg.optim.milestones == (5, 6)
    assert cfg.margin is None and cfg.neck is False


def test_none_text_means_null_for_optional_keys():
    assert config.load(Recipe, None, ["margin=none"]).margin is None
    assert config.load(Recipe, None, ["margin=None"]).margin is None
    with pytest.raises(UserError, match="expects text|expects an integer"):
        config.load(Recipe, None, ["epochs=none"])


def test_int_is_accepted_for_float_and_saved_config_round_trips(tmp_path):
    cfg = config.load(Recipe, None, ["optim.lr=1"])
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    saved = config.save(cfg, tmp_path / "out" / "config.yaml")
    assert config.load(Recipe, saved) == cfg
    assert yaml.safe_load(saved.read_text())["optim"]["milestones"] == [40, 70]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["epoch=3"], "unknown config key 'epoch'"),
        (["optim.momentum=0.9"], "unknown config key 'optim.momentum'"),
        (["epochs=many"], "expects an integer"),
        (["neck=1"], "expects true or false"),
        (["optim=3"], "must be a mapping"),
        (["novalue"], "key=value"),
    ],
)
def test_bad_keys_and_values_are_user_errors(overrides, message):
    with pytest.raises(UserError, match=message):
        config.load(Recipe, None, overrides)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(UserError, match="cannot read config"):
        config.load(Recipe, tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(UserError, match="not valid YAML"):
        config.load(Recipe, bad)


def test_resolve_config_path_by_name_and_path(tmp_path):
    with pytest.raises(UserError, match="unknown tracker config 'no-such'"):
        config.resolve_config_path("no-such", "tracker")
    path = tmp_path / "mine.yaml"
    path.write_text("{}")
    assert config.resolve_config_path(path, "tracker") == path
    with pytest.raises(UserError, match="config file not found"):
        config.resolve_config_path(tmp_path / "absent.yaml", "tracker")


def test_bare_on_and_off_mean_the_words_where_a_choice_allows_them(tmp_path):
    """YAML 1.1 reads a bare on/off as true/false; `amp` allows off but not on."""
    from mot_reid.reid.recipe import ReIDRecipe

    recipe = config.load(ReIDRecipe, None, ["runtime.amp=off", "runtime.channels_last=on", "data.device_cache=off"])
    assert (recipe.runtime.amp, recipe.runtime.channels_last, recipe.data.device_cache) == ("off", "on", "off")
    (tmp_path / "r.yaml").write_text("runtime:\n  amp: off\n")
    assert config.load(ReIDRecipe, tmp_path / "r.yaml").runtime.amp == "off"
    with pytest.raises(UserError, match="runtime.amp.*got 'on'"):
        config.load(ReIDRecipe, None, ["runtime.amp=on"])  # not a choice of amp: refused, in the user's words


def test_re_ranking_neighbour_counts_are_checked_when_the_recipe_loads():
    from mot_reid.reid.recipe import ReIDRecipe

    with pytest.raises(UserError, match="rerank_k1 and test.rerank_k2 must be at least 1"):
        config.load(ReIDRecipe, None, ["test.rerank_k2=0"])
