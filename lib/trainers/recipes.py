"""How each network's training data is made: the shared preprocessing, plus simulated clicks for the click network.

Clicks are simulated from the final labels (DeepGrow/DeepEdit protocol): a first click deep inside the object,
then ``click_rounds`` corrective clicks per iteration where the network's own prediction is most wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from monai.apps.deepgrow.interaction import Interaction
from monai.transforms import Transform

from lib.config import AppConfig
from lib.networks.descriptions import CLICK_NETWORK, SEGMENTATION, NetworkDescription
from lib.transforms.guidance import click_training_transforms, click_validation_transforms, corrective_click_transforms
from lib.transforms.pipeline import training_transforms, validation_transforms

Transforms = Callable[[AppConfig], list[Transform]]


@dataclass(frozen=True)
class Recipe:
    """A network's training and validation transforms, and the transforms between simulated click rounds."""

    training: Transforms
    validation: Transforms
    corrective: Transforms | None = None

    def iteration_update(self, app_config: AppConfig, train: bool) -> Interaction | None:
        """MONAI's click simulation between iterations, for a network trained from clicks."""
        rounds = app_config.click_rounds
        if self.corrective is None or not rounds:
            return None
        return Interaction(self.corrective(app_config), rounds, train=train)


RECIPES: dict[NetworkDescription, Recipe] = {
    SEGMENTATION: Recipe(training_transforms, validation_transforms),
    CLICK_NETWORK: Recipe(click_training_transforms, click_validation_transforms, corrective_click_transforms),
}
