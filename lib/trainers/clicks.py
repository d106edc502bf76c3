"""Train the click-guided network (image + foreground/background click channels -> the clicked object).

Clicks are simulated from the final labels (DeepGrow/DeepEdit protocol): a first click deep inside the object,
then ``click_rounds`` corrective clicks per iteration where the network's own prediction is most wrong. It shares
the segmentation model's preprocessing, patches, augmentation, network factory, validation split and publishing.
"""

from __future__ import annotations

import os

from monai.apps.deepgrow.interaction import Interaction
from monailabel.tasks.train.basic_train import Context

from lib.config import CLICKS, TumorConfig
from lib.trainers.segmentation import CLICK_STATS_FILE, SegmentationTrainer
from lib.transforms.guidance import (
    click_training_transforms,
    click_validation_transforms,
    corrective_click_transforms,
)


class ClickTrainer(SegmentationTrainer):
    """Fine-tune the click-guided network on every image with a ``final`` label.

    Starts from its latest published weights, else from scratch; publishes to ``<model_dir>/clicks.pt``.

    Args:
        config: the app configuration (``click_epochs``, ``click_rounds``).
    """

    model = CLICKS
    stats_file = CLICK_STATS_FILE

    def _epochs(self, config: TumorConfig) -> int:
        return max(config.click_epochs, 1)

    def _describe(self, config: TumorConfig) -> str:
        return f"Train the click-guided network on submitted labels ({', '.join(config.labels)}), clicks simulated"

    def train_pre_transforms(self, context: Context) -> list:
        return click_training_transforms(self.tumor)

    def val_pre_transforms(self, context: Context) -> list:
        return click_validation_transforms(self.tumor)

    def train_iteration_update(self, context: Context) -> Interaction | None:
        rounds = self.tumor.click_rounds
        return Interaction(corrective_click_transforms(self.tumor), rounds, train=True) if rounds else None

    def val_iteration_update(self, context: Context) -> Interaction | None:
        rounds = self.tumor.click_rounds
        return Interaction(corrective_click_transforms(self.tumor), rounds, train=False) if rounds else None

    def load_path(self, output_dir: str, pretrained: bool = True) -> str | None:
        path = self.tumor.published_path(CLICKS)
        return path if pretrained and os.path.isfile(path) else None
