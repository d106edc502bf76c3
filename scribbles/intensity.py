"""Foreground/background intensity models learned from the annotator's own marks, on the image's own values.

No intensity window is assumed: features are the image channels scaled by the region's robust spread, and each
class is a Gaussian mixture fitted to the voxels marked (or assumed) as that class.
"""

from __future__ import annotations

import numpy as np
from sklearn.mixture import GaussianMixture


def robust_normalise(image: np.ndarray) -> np.ndarray:
    """Scale each channel of ``image`` (C, ...) by its median and inter-quartile range (float32)."""
    values = image.reshape(image.shape[0], -1)
    q1, median, q3 = np.percentile(values, [25, 50, 75], axis=1)
    scale = np.maximum((q3 - q1) / 1.349, 1e-6 * np.maximum(np.abs(median), 1.0))
    shape = (-1,) + (1,) * (image.ndim - 1)
    return ((image - median.reshape(shape)) / scale.reshape(shape)).astype(np.float32)


class IntensityModel:
    """Two Gaussian mixtures, one per class, over the channels of a normalised image.

    Args:
        components: most mixture components per class (fewer when a class has few samples).
        max_samples: voxels drawn per class for fitting.
        seed: random seed for sampling and fitting, so that the same marks give the same result.
    """

    def __init__(self, components: int = 3, max_samples: int = 5000, seed: int = 0) -> None:
        self.components = components
        self.max_samples = max_samples
        self.seed = seed
        self.foreground: GaussianMixture | None = None
        self.background: GaussianMixture | None = None

    def _fit(self, samples: np.ndarray) -> GaussianMixture:
        rng = np.random.default_rng(self.seed)
        if len(samples) > self.max_samples:
            samples = samples[rng.choice(len(samples), self.max_samples, replace=False)]
        components = int(np.clip(len(samples) // 20, 1, self.components))
        return GaussianMixture(components, reg_covar=1e-2, random_state=self.seed).fit(samples)

    def fit(self, image: np.ndarray, foreground: np.ndarray, background: np.ndarray) -> IntensityModel:
        """Fit to the voxels of ``image`` (C, ...) under the ``foreground`` and ``background`` masks."""
        for name, mask in (("foreground", foreground), ("background", background)):
            if mask.sum() < 2:
                raise ValueError(f"the {name} intensity model needs at least 2 marked voxels, got {int(mask.sum())}")
        self.foreground = self._fit(image[:, foreground].T)
        self.background = self._fit(image[:, background].T)
        return self

    def foreground_probability(self, image: np.ndarray) -> np.ndarray:
        """P(foreground | intensity) for every voxel of ``image`` (C, ...), with equal class priors."""
        if self.foreground is None or self.background is None:
            raise RuntimeError("fit the intensity model before using it")
        features = image.reshape(image.shape[0], -1).T
        inverse = None
        if features.shape[1] == 1:  # one channel: score each distinct value once (CT values are integers)
            values, inverse = np.unique(features[:, 0], return_inverse=True)
            features = values[:, None]
        ratio = self.foreground.score_samples(features) - self.background.score_samples(features)
        probability = 1.0 / (1.0 + np.exp(-np.clip(ratio, -30.0, 30.0)))
        if inverse is not None:
            probability = probability[inverse.ravel()]
        return probability.reshape(image.shape[1:]).astype(np.float32)
