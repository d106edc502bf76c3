"""The app's two networks, each described once: what it takes, what it outputs, where it is published.

Every task that handles a network (training, inference, scoring, checkpoints, the ``/model`` routes) is given one
of these descriptions instead of a name to branch on. The segmentation network pre-segments every label; the click
network (DeepEdit-style) segments the object an annotator clicks, from the image plus one channel of foreground
and one of background clicks. (The training-free click tool in ``scribbles/`` is a different thing.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lib.config.plan import ModelPlan

GUIDANCE = ("foreground", "background")  # the click network's extra input channels, in order
CLICKED_OBJECT = "clicked object"


@dataclass(frozen=True)
class NetworkDescription:
    """One of the app's networks.

    Attributes:
        name: the network's name in logs, stats and checkpoints.
        file: file name of its published weights in ``model_dir`` (``<stem>_last.pt`` keeps a run's final ones).
        served_as: the infer model that serves it in ``/info``.
        guidance: input channels added to the image's (click maps), in order.
        segments_labels: True when it outputs background and every label; False for background and one object.
        keeps_largest: whether validation decides, per label, to keep only the largest connected component.
        ensembled: whether it is served as an ensemble of ``plan.ensemble`` copies (:mod:`lib.networks.ensemble`).
    """

    name: str
    file: str
    served_as: str
    guidance: tuple[str, ...] = ()
    segments_labels: bool = True
    keeps_largest: bool = True
    ensembled: bool = False

    def in_channels(self, plan: ModelPlan) -> int:
        """Input channels: the image's sequences, then the guidance."""
        return plan.channels + len(self.guidance)

    def output_names(self, plan: ModelPlan) -> tuple[str, ...]:
        """Names of the foreground outputs (channel 1 onwards)."""
        return plan.labels if self.segments_labels else (CLICKED_OBJECT,)

    def out_channels(self, plan: ModelPlan) -> int:
        """Output channels: background and each output name."""
        return 1 + len(self.output_names(plan))

    def members(self, plan: ModelPlan) -> int:
        """How many copies of the network the app serves together: ``plan.ensemble`` if ensembled, else 1."""
        return plan.ensemble if self.ensembled else 1

    def architecture(self, plan: ModelPlan) -> dict[str, object]:
        """What must match for a checkpoint of this network to load: the plan, the guidance if any, and the
        number of ensemble members when above 1."""
        members = self.members(plan)
        return {
            **plan.recorded(),
            **({"guidance": list(self.guidance)} if self.guidance else {}),
            **({"ensemble": members} if members > 1 else {}),
        }

    def published_path(self, model_dir: str) -> str:
        """The served weights, replaced only when a training run completes (or an admin uploads weights)."""
        return os.path.join(model_dir, self.file)

    def last_path(self, model_dir: str) -> str:
        """The final weights of the run that published the served ones; the next run continues from them."""
        stem, ext = os.path.splitext(self.file)
        return os.path.join(model_dir, f"{stem}_last{ext}")


SEGMENTATION = NetworkDescription(name="segmentation", file="segmentation.pt", served_as="segmentation", ensembled=True)
CLICK_NETWORK = NetworkDescription(
    name="click_network",
    file="click_network.pt",
    served_as="deepedit",
    guidance=GUIDANCE,
    segments_labels=False,
    # A separate region the annotator clicked into the object must stay in it.
    keeps_largest=False,
)
# In training order: the click network trains after the segmentation network, in the same run.
NETWORKS = (SEGMENTATION, CLICK_NETWORK)
