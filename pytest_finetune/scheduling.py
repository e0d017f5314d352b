"""Under pytest-xdist, the tests of one recipe on one worker: the controller schedules by recipe.

pytest-xdist's controller does not collect: its scheduler sees node ids only. So each worker, once it has
collected, sends the recipe group of each marked test (:func:`~pytest_finetune.options.recipe_group`) through
an execnet channel of its own (in ``workerinput``, as :mod:`.relay`'s), before pytest-xdist's own
``collectionfinish`` event on the same gateway; execnet hands the controller the messages of a gateway in
order, so the groups are known when the scheduler splits the collection. The scheduler is xdist's
``loadscope`` with recipes for scopes: a recipe's tests go to one worker as one unit, every other test is a
unit of its own (as under ``load``). Node ids are left as they are (xdist's own ``loadgroup`` writes the group
into them, which pytest 9.2 no longer reads: pytest-xdist issue #1386).
"""

from __future__ import annotations

from typing import Any

import pytest

from .calibration import CalibrationSeed
from .options import recipe_group
from .pytest_compat import scope_scheduling

#: The key of ``workerinput`` that holds the channel a worker sends its tests' recipe groups through.
RECIPES_CHANNEL = "finetune_recipes"


def scheduled_by_recipe(config: pytest.Config) -> bool:
    """Whether this process is a pytest-xdist worker whose controller schedules by recipe (:class:`RecipeScheduler`)."""
    return RECIPES_CHANNEL in getattr(config, "workerinput", {})


def send_recipe_groups(session: pytest.Session) -> None:
    """On a worker scheduled by recipe: send the controller the recipe group of each test that fine-tunes one
    (a calibration's seed item has none, so that another worker may take it while the test trains)."""
    channel = getattr(session.config, "workerinput", {}).get(RECIPES_CHANNEL)
    if channel is None:
        return
    groups = {}
    for item in session.items:
        group = None if isinstance(item, CalibrationSeed) else recipe_group(item)
        if group is not None:
            groups[item.nodeid] = group
    channel.send(groups)


class RecipeScheduler:
    """On pytest-xdist's controller under ``--dist load`` (``-n``'s default): gives each worker a channel for its
    recipe groups, and schedules a recipe's tests as one unit of work."""

    def __init__(self) -> None:
        self.groups: dict[str, str] = {}  # filled by execnet's receiving threads, one update per worker

    def pytest_configure_node(self, node: Any) -> None:
        channel = node.gateway.newchannel()
        channel.setcallback(self.groups.update)
        node.workerinput[RECIPES_CHANNEL] = channel

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        return scope_scheduling(config, log, lambda nodeid: self.groups.get(nodeid, nodeid))
