"""The plugin's state for one pytest session, kept in one place."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import pytest

from .options import Layer, marker_layer, python_layer, session_layers
from .recipe import Recipe, build_recipe

if TYPE_CHECKING:
    from .training import FinetuneResult

_RECIPE_KEY = pytest.StashKey[Recipe]()


@dataclasses.dataclass
class FinetuneSession:
    """Whether fine-tuning runs, the session-wide settings and the results so far."""

    enabled: bool
    layers: list[Layer]
    #: Finished fine-tunes by training key (see ``fixtures.finetune_result``).
    results: dict[Any, FinetuneResult] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_config(cls, config: pytest.Config) -> FinetuneSession:
        """Read ``--finetune`` and the ini/environment/command-line layers (checked here)."""
        return cls(enabled=config.getoption("--finetune"), layers=session_layers(config))

    def recipe_for(self, item: pytest.Item) -> Recipe:
        """``item``'s recipe: session layers, its marker, then the adjust-recipe hook."""
        if _RECIPE_KEY not in item.stash:
            layers = [*self.layers, marker_layer(item)]
            recipe = build_recipe(layers)
            # pluggy calls the last registered implementation (the closest conftest) first;
            # apply it last so that it wins.
            for overrides in reversed(item.ihook.pytest_finetune_adjust_recipe(recipe=recipe, item=item)):
                if overrides:
                    layers.append(
                        python_layer(
                            f"{item.nodeid}: pytest_finetune_adjust_recipe hook", overrides, item.config.rootpath
                        )
                    )
            item.stash[_RECIPE_KEY] = build_recipe(layers)
        return item.stash[_RECIPE_KEY]


SESSION_KEY = pytest.StashKey[FinetuneSession]()
