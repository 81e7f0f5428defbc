"""Every model a user fills in refuses unknown keys: a typo is an error naming it, never a default."""

import importlib
import inspect
import pkgutil
import typing
from pathlib import Path

import pytest
from prefect import Flow
from prefect.blocks.core import Block
from pydantic import BaseModel, ValidationError

import flows
from flows.backup import PruneParams
from flows.replication import ReplicationParams
from tasks.drill_experiment import load_experiment
from tasks.strict_input import StrictInput


def _models(annotation: object) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions, lists, dicts). Blocks
    are saved documents Prefect loads itself (see the note in tasks/strict_input.py), not walked."""
    if isinstance(annotation, type) and issubclass(annotation, Block):
        return []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _input_models() -> dict[str, type[BaseModel]]:
    """Each flow's parameter models and every model nested in them, by where they sit."""
    found: dict[str, type[BaseModel]] = {}
    todo: list[tuple[str, type[BaseModel]]] = []
    for info in pkgutil.iter_modules(flows.__path__, "flows."):
        for name, obj in vars(importlib.import_module(info.name)).items():
            if isinstance(obj, Flow):
                hints = typing.get_type_hints(obj.fn)
                for param, p in inspect.signature(obj.fn).parameters.items():
                    todo += [(f"{obj.name}({param})", m) for m in _models(hints.get(param, p.annotation))]
    while todo:
        where, model = todo.pop()
        if model in found.values():
            continue
        found[where] = model
        todo += [(f"{where}.{f}", m) for f, info in model.model_fields.items() for m in _models(info.annotation)]
    return found


def test_every_flow_parameter_model_and_its_nested_models_are_strict() -> None:
    models = _input_models()
    assert len(models) >= 15, sorted(models)  # the walk found the flows' models
    lenient = {where: m.__name__ for where, m in models.items() if not issubclass(m, StrictInput)}
    assert lenient == {}


def test_a_typo_in_prune_parameters_is_refused_by_name_before_anything_is_deleted() -> None:
    with pytest.raises(ValidationError) as caught:
        PruneParams.model_validate({"dryrun": True, "policy": {"keep_last": 1, "keep_dayly": 30}})
    where = {tuple(e["loc"]) for e in caught.value.errors() if e["type"] == "extra_forbidden"}
    assert where == {("dryrun",), ("policy", "keep_dayly")}


def test_a_typo_in_replication_parameters_is_refused() -> None:
    with pytest.raises(ValidationError, match="delet"):
        ReplicationParams.model_validate({"delet": False})


def test_a_typo_in_a_drill_file_names_the_file_and_the_key(tmp_path: Path) -> None:
    shipped = Path(__file__).resolve().parents[2] / "deployments" / "experiments"
    source = next(iter(sorted(shipped.glob("*.yaml"))))
    text = source.read_text()
    assert "\nslos:" in text or "\nslo:" in text, "the shipped drill has no SLO block to misspell"
    bad = tmp_path / "typo.yaml"
    bad.write_text(text.replace("\nslos:", "\nsloz:").replace("\nslo:", "\nsloz:"))
    with pytest.raises(Exception, match=r"typo\.yaml.*sloz|sloz.*typo\.yaml"):
        load_experiment(bad)


@pytest.mark.parametrize(("change", "named"), [
    ({"prompt": "p", "action": "move-label", "version": 3}, "needs both `label` and `version`"),
    ({"prompt": "p", "action": "move-label", "label": "candidate"}, "needs both `label` and `version`"),
    ({"prompt": "p", "action": "move-label", "label": "candidate", "version": -1}, "version"),
    ({"prompt": " ", "template": "t"}, "a prompt name is required"),
    ({"prompt": "p", "lable": "candidate", "template": "t"}, "lable"),
])
def test_a_prompt_change_that_would_do_nothing_is_refused(change: dict, named: str) -> None:
    from flows.prompt_regression import PromptChange

    with pytest.raises(ValidationError, match=named):
        PromptChange.model_validate(change)
    assert PromptChange(prompt="p", action="move-label", label="candidate", version=3).version == 3
