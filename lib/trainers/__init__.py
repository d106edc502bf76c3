"""Training of the app's networks: one run (:mod:`lib.trainers.run`) trains and publishes both."""

from lib.trainers.run import TrainingRun

__all__ = ["TrainingRun"]
