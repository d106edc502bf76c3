"""Active-learning strategies offered by the app (one explicit registry)."""

from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.tasks.activelearning.epistemic import Epistemic
from monailabel.tasks.activelearning.first import First

from lib.activelearning.random import RandomLeastRecent


def strategies() -> dict[str, Strategy]:
    """Name -> strategy; the first is the default in 3D Slicer's Next Sample.

    ``epistemic`` ranks unlabelled images by the score :class:`lib.scoring.EpistemicScoring` stores; before any
    model is trained every score is 0 and it serves the least recently served image.
    """
    return {"epistemic": Epistemic(), "random": RandomLeastRecent(), "first": First()}
