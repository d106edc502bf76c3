"""The scribbles and clicks models served to 3D Slicer (types ``scribbles`` and ``deepgrow``).

Both follow the module's protocol (``docs``: slicer-contract): the result is one volume on the image's grid with
value 1 inside the object, which the module imports into the selected segment, replacing it.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from lib.datastore.validation import segment_values
from lib.infers.errors import InteractionError
from lib.transforms.formats import VOLUME_SUFFIXES
from lib.transforms.geometry import Geometry
from lib.transforms.sequences import case_version
from lib.transforms.volume_io import read_case, read_volume, write_label
from scribbles.clicks import ClickResult, segment_clicks
from scribbles.graphcut import CLICK_PARAMS, SCRIBBLE_PARAMS, GraphCutParams, refine, roi_mask
from scribbles.shape_prior import signed_distance

logger = logging.getLogger(__name__)

FOREGROUND = "foreground_scribbles"
BACKGROUND = "background_scribbles"
CACHED_IMAGES = 2  # images kept in memory per task (keyed by path and modification time)


def _result_path(request: dict[str, Any]) -> str:
    extension = request.get("result_extension") or ".nrrd"
    if extension not in VOLUME_SUFFIXES:
        raise InteractionError(f"result_extension {extension!r} is not accepted: expected one of {VOLUME_SUFFIXES}")
    fd, path = tempfile.mkstemp(suffix=extension, prefix="interactive-")
    os.close(fd)
    return path


def _reply(mask: np.ndarray, geometry: Geometry, request: dict[str, Any], label: str, start: float) -> tuple:
    path = write_label(mask.astype(np.uint8), geometry, _result_path(request))
    seconds = round(time.perf_counter() - start, 3)
    return path, {"label_names": {label: 1}, "voxels": int(mask.sum()), "latencies": {"total": seconds}}


class _Interactive(InferTask):
    def __init__(
        self,
        infer_type: str,
        labels: Sequence[str],
        description: str,
        params: GraphCutParams,
        sequences: Sequence[str] = (),
    ) -> None:
        super().__init__(type=infer_type, labels=list(labels), dimension=3, description=description, config={})
        self.params = params
        self.sequences = tuple(sequences)  # a multi-sequence case is read whole (all its sequences)
        self._images: OrderedDict[tuple, tuple[np.ndarray, Geometry]] = OrderedDict()
        self._images_lock = threading.Lock()

    def is_valid(self) -> bool:
        return True

    def _image(self, request: dict[str, Any]) -> tuple[np.ndarray, Geometry]:
        """The image as float32 (C, I, J, K); the last few are kept, as an annotator sends many requests per image."""
        path = str(request["image"])
        key = case_version(path, self.sequences)
        with self._images_lock:
            cached = self._images.get(key)
        if cached is None:
            cached = read_case(path, self.sequences)
            with self._images_lock:
                self._images[key] = cached
                while len(self._images) > CACHED_IMAGES:
                    self._images.popitem(last=False)
        return cached

    def _label(self, request: dict[str, Any]) -> str:
        label = request.get("label")
        return label if isinstance(label, str) and label in self.labels else self.labels[0]


class ScribblesInfer(_Interactive):
    """Scribble refinement: intensity model from the scribbles, slice-interpolated shape prior, 3D graph cut.

    The module sends every segment in one labelmap (value = position + 1) with ``label_info`` naming them; the
    scribbles are the ``foreground_scribbles`` and ``background_scribbles`` entries. The selected segment, when
    not empty (a pre-segmentation or earlier edits), is the prior that the scribbles correct.
    """

    def __init__(
        self, labels: Sequence[str], params: GraphCutParams = SCRIBBLE_PARAMS, sequences: Sequence[str] = ()
    ) -> None:
        super().__init__(
            InferType.SCRIBBLES,
            labels,
            "Scribbles: mark the tumour (foreground) and what is not (background) on a few slices; "
            "works on CT and MR without training",
            params,
            sequences,
        )

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        start = time.perf_counter()
        image, geometry = self._image(request)
        path = request.get("label")
        if not isinstance(path, str) or not os.path.isfile(path):
            raise InteractionError("no scribbles: send the scribble labelmap as the 'label' file")
        scribbles, scribble_geometry = read_volume(path)
        mismatch = geometry.mismatch(scribble_geometry)
        if mismatch:
            raise InteractionError(f"the scribble volume is not on the image's grid: {mismatch}")
        if scribbles.shape[0] != 1:
            raise InteractionError(f"the scribble volume has {scribbles.shape[0]} channels; send one labelmap")
        values = scribbles[0]
        try:
            segments = segment_values(request.get("label_info") or [])
        except ValueError as e:
            raise InteractionError(str(e)) from e
        ids: dict[str, list[int]] = {}
        for name, value in segments:  # two segments of one name mark together
            ids.setdefault(name, []).append(value)
        if FOREGROUND not in ids and BACKGROUND not in ids:
            raise InteractionError(f"label_info names no '{FOREGROUND}' or '{BACKGROUND}' segment")
        foreground = np.isin(values, ids.get(FOREGROUND, []))
        background = np.isin(values, ids.get(BACKGROUND, []))
        selected = request.get("selected_label_name")
        existing = (
            np.isin(values, ids[selected]) if selected in ids and selected not in (FOREGROUND, BACKGROUND) else None
        )
        if not foreground.any() and not background.any():
            raise InteractionError("the scribble volume holds no foreground or background scribble")
        try:
            roi = roi_mask(values.shape, request.get("roi"))
            distance = functools.partial(signed_distance, taper=self.params.taper)
            mask = refine(image, geometry.spacing, foreground, background, distance, existing, roi, self.params)
        except ValueError as e:
            raise InteractionError(str(e)) from e
        label = selected if selected in self.labels else self.labels[0]
        return _reply(mask, geometry, request, label, start)


class ClickToolInfer(_Interactive):
    """Clicks with no training: the clicked tumour in 3D; each new click refines the previous result.

    The previous result is kept per image and label while the new clicks extend the earlier ones; ``reset_state``
    (sent by the module on a new sample) or a changed set of clicks starts over.
    """

    def __init__(
        self, labels: Sequence[str], params: GraphCutParams = CLICK_PARAMS, sequences: Sequence[str] = ()
    ) -> None:
        super().__init__(
            InferType.DEEPGROW,
            labels,
            "Clicks: click inside the tumour, then on what it missed or leaked into; works without training",
            params,
            sequences,
        )
        self._previous: OrderedDict[tuple[str, str], ClickResult] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        start = time.perf_counter()
        image, geometry = self._image(request)
        label = self._label(request)
        fg = [list(p) for p in request.get("foreground") or []]
        bg = [list(p) for p in request.get("background") or []]
        key = (str(request["image"]), label)
        with self._lock:
            previous = None if request.get("reset_state") else self._previous.get(key)
        try:
            roi = roi_mask(image.shape[1:], request.get("roi"))
            result = segment_clicks(image, geometry.spacing, fg, bg, previous, roi, self.params)
        except ValueError as e:
            raise InteractionError(str(e)) from e
        mask = result.mask
        with self._lock:
            self._previous[key] = result
            self._previous.move_to_end(key)
            while len(self._previous) > 8:
                self._previous.popitem(last=False)
        return _reply(mask, geometry, request, label, start)
