"""Scoring methods that feed the active-learning strategies."""

from lib.scoring.epistemic import EpistemicScoring, mutual_information

__all__ = ["EpistemicScoring", "mutual_information"]
