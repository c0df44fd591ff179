"""One source of defaults: every notebook's parameters cell agrees with the config dataclass it builds, and the
config helpers (notebook parameters → config, field docstrings) behave."""

from __future__ import annotations

import dataclasses
import json

import pytest

from sgglib.config import field_docs, from_parameters
from sgglib.data import DataConfig
from sgglib.data.synthetic import WorldConfig
from sgglib.runs import repo_path
from sgglib.train.grpo import GRPORunConfig
from sgglib.train.sft import SFTRunConfig
from sgglib.train.zero_shot import ZeroShotConfig

# notebook → the config classes its parameters cell feeds (through sgglib.config.from_parameters)
BUILDS = {
    "01_data_prep.ipynb": (WorldConfig, DataConfig),
    "02_zero_shot_baselines.ipynb": (ZeroShotConfig,),
    "03_sft.ipynb": (SFTRunConfig,),
    "04_grpo.ipynb": (GRPORunConfig,),
}


def parameters(notebook: str) -> dict:
    """The names the notebook's parameters cell defines, with their values (the cell is flat literals)."""
    cells = json.loads(repo_path("notebooks", notebook).read_text())["cells"]
    code = next(c for c in cells if c["cell_type"] == "code")
    assert "parameters" in code["metadata"].get("tags", []), notebook
    namespace: dict = {}
    exec("".join(code["source"]), {}, namespace)  # noqa: S102 - our own notebook's literal assignments
    return namespace


def differences(cls, params: dict) -> dict:
    """The fields a parameters cell sets to something other than ``cls``'s default: ``{name: (cell, default)}``."""
    shared = sorted({f.name for f in dataclasses.fields(cls)} & set(params))
    assert shared, cls.__name__
    built, default = from_parameters(cls, params), cls()
    return {k: (getattr(built, k), getattr(default, k)) for k in shared if getattr(built, k) != getattr(default, k)}


@pytest.mark.parametrize("notebook", sorted(BUILDS))
def test_parameters_cell_agrees_with_its_dataclass(notebook):
    # a parameter that is a config field has the dataclass's default, so the notebook and the command line start
    # from the same run; and the notebook really uses from_parameters to build its config
    params = parameters(notebook)
    source = repo_path("notebooks", notebook).read_text()
    for cls in BUILDS[notebook]:
        assert f"from_parameters({cls.__name__}" in source, (notebook, cls.__name__)
        assert not differences(cls, params), f"{notebook}: parameters differ from {cls.__name__} defaults"


def test_the_rl_levers_are_notebook_04_parameters():
    # what docs/method.md names as a lever of a GRPO run can be set from the notebook and `make demo -p 04.<name>`
    # (the pipeline drops a name the parameters cell does not declare); the reference's exact reward included
    levers = {"rewards", "guard", "dangling", "format_strict", "system_prompt", "baseline", "credit", "shuffle_rewards",
              "share_prompt", "scale_rewards", "loss_type", "temperature", "top_k", "top_p", "start", "best_of",
              "rare_predicate_power", "prompts_per_step", "group_size", "beta"}
    fields = {f.name for f in dataclasses.fields(GRPORunConfig)}
    assert levers <= fields
    assert sorted(levers - set(parameters("04_grpo.ipynb"))) == []


def test_the_check_catches_a_drifted_default():
    # the comparison above is not vacuous: the 1,500 steps notebook 03 once said, or a comma list that differs
    assert differences(SFTRunConfig, {**parameters("03_sft.ipynb"), "max_steps": 1500}) == {"max_steps": (1500, 1000)}
    assert differences(ZeroShotConfig, {"prompts": "closed"}) == {"prompts": (["closed"], ["open", "closed"])}


def test_from_parameters_reads_fields_only_and_splits_lists():
    # notebook-only parameters are ignored; a comma string fills a list field; overrides win
    cfg = from_parameters(ZeroShotConfig, {"prompts": "closed", "limit": 5, "num_examples": 3})
    assert cfg.prompts == ["closed"] and cfg.limit == 5
    cfg = from_parameters(SFTRunConfig, {"lora_target_modules": "q_proj, v_proj"}, max_steps=3)
    assert cfg.lora_target_modules == ["q_proj", "v_proj"] and cfg.max_steps == 3


def test_every_config_field_has_a_docstring():
    # the docstring under a field is its --help text and its documentation
    for cls in (SFTRunConfig, GRPORunConfig, ZeroShotConfig, DataConfig, WorldConfig):
        docs = field_docs(cls)
        missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
        assert not missing, (cls.__name__, missing)


def test_configs_have_flat_defaults():
    # flat literals only (papermill parameters); lists are the one exception and arrive as comma strings
    for cls in (SFTRunConfig, GRPORunConfig, ZeroShotConfig):
        for name, value in dataclasses.asdict(cls()).items():
            assert value is None or isinstance(value, (str, int, float, bool, list)), (cls.__name__, name, value)
