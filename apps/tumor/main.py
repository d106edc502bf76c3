"""The tumour-annotation MONAI Label app: ``monailabel start_server --app apps/tumor --studies <folder>``."""

from __future__ import annotations

import logging
import os
from typing import Any

import requests
from fastapi import HTTPException
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMWebDatastore
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.utils.sessions import Sessions

from lib.activelearning import strategies
from lib.checkpoint import CheckpointError
from lib.config import AppConfig, parse_config
from lib.corrections import CorrectionLog
from lib.datastore import VOLUME_EXTENSIONS, TumorDatastore
from lib.datastore.dicomweb import TumorDicomDatastore
from lib.datastore.validation import InvalidUploadError
from lib.infers import ClickNetworkInfer, InteractionError, ModelNotTrainedError, SegmentationInfer
from lib.infers.batch import TumorBatchInfer
from lib.networks.descriptions import CLICK_NETWORK, SEGMENTATION
from lib.networks.precision import describe
from lib.scoring import EpistemicScoring
from lib.server.install import INTERNAL_TOKEN_ENV, hold_folders, hold_pacs_cache, secure, short_refusals
from lib.trainers import TrainingRun
from lib.transforms.volume_io import VolumeReadError
from scribbles import ClickToolInfer, ScribblesInfer

logger = logging.getLogger(__name__)

BACKGROUND = "background"


class TumorApp(MONAILabelApp):
    """Pre-segments tumours, learns from submitted corrections and picks the next case.

    Args:
        app_dir: this folder.
        studies: the studies folder (images, and ``labels/final`` for submitted labels).
        conf: ``--conf`` key/values, parsed once into :class:`lib.config.AppConfig` (``self.app_config``).
    """

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        short_refusals()
        self.app_config: AppConfig = parse_config(conf or {}, app_dir)
        hold_folders(self.app_config, studies)
        self.corrections = CorrectionLog(self.app_config.model_dir, self.app_config.plan.labels)
        logger.info("Tumour app configuration: %s", self.app_config)
        logger.info("Network forward passes in %s", describe(self.app_config.amp, self.app_config.torch_device()))
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="Tumour annotation",
            description="Tumour pre-segmentation that learns from annotators' corrections",
            version="0.1.0",
            labels=list(self.app_config.plan.labels),
        )
        secure(self, self.app_config)

    def _load_sessions(self, load: bool = False) -> Sessions | None:
        """Sessions in this server's own folder (``<model_dir>/sessions``) unless ``MONAI_LABEL_SESSION_PATH`` names
        one: MONAI Label's default, ``~/.cache/monailabel/sessions``, is shared by every server of the machine, so
        one server would serve another's session to whoever names its id."""
        if not load:
            return None
        own = os.path.join(self.app_config.model_dir, "sessions")
        return Sessions((settings.MONAI_LABEL_SESSION_PATH or "").strip() or own, settings.MONAI_LABEL_SESSION_EXPIRY)

    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            stock = super().init_datastore()
            if not isinstance(stock, DICOMWebDatastore):
                return stock
            hold_pacs_cache(stock._datastore_path)
            # The same PACS, client and settings, with the checks of lib.datastore.dicomweb.
            return TumorDicomDatastore(
                self.app_config,
                client=stock._client,
                search_filter=stock._search_filter,
                cache_path=(settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip() or None,
                fetch_by_frame=stock._fetch_by_frame,
                convert_to_nifti=stock._convert_to_nifti,
            )
        return TumorDatastore(
            self.studies,
            self.app_config,
            extensions=VOLUME_EXTENSIONS,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def init_infers(self) -> dict[str, InferTask]:
        labels = self.app_config.plan.labels
        return {
            SEGMENTATION.served_as: SegmentationInfer(self.app_config),
            "scribbles": ScribblesInfer(labels, sequences=self.app_config.sequences),
            "clicks": ClickToolInfer(labels, sequences=self.app_config.sequences),
            CLICK_NETWORK.served_as: ClickNetworkInfer(self.app_config),
        }

    def init_batch_infer(self) -> TumorBatchInfer:
        return TumorBatchInfer(self.app_config)

    def init_trainers(self) -> dict[str, TrainTask]:
        return {SEGMENTATION.name: TrainingRun(self.app_config)}

    def init_strategies(self) -> dict[str, Strategy]:
        return strategies()

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        return {"epistemic": EpistemicScoring(self.app_config)}

    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """Run a model; errors an annotator can act on come back as 4xx with the reason."""
        model = request.get("model")
        if model not in self._infers:
            raise HTTPException(404, f"unknown model {model!r}; available: {', '.join(self._infers)}")
        image = request.get("image")
        in_datastore = self._check_image(image, datastore or self.datastore())
        try:
            result = super().infer(request, datastore)
        except ModelNotTrainedError as e:
            raise HTTPException(409, str(e)) from e
        except CheckpointError as e:
            raise HTTPException(409, f"the model's weights cannot be used: {e}") from e
        except VolumeReadError as e:
            raise HTTPException(422, f"image refused: {e}") from e
        except InteractionError as e:
            raise HTTPException(422, str(e)) from e
        if in_datastore and model == SEGMENTATION.served_as and result.get("file"):
            served = (result.get("params") or {}).get("model") or {}
            self.corrections.served(image, result["file"], served.get("run_id") or served.get("checkpoint", "unknown"))
        return result

    def _check_image(self, image: Any, store: Datastore) -> bool:
        """Infer reads datastore images and session volumes only, never a path a client names.

        Returns:
            True for a datastore image, False for a session volume.
        """
        sessions = self.sessions()
        if isinstance(image, str) and sessions is not None and os.path.isabs(image):
            folder = os.path.realpath(sessions.store_path)
            if os.path.commonpath([folder, os.path.realpath(image)]) == folder:
                return False
        if not isinstance(image, str) or image not in store.list_images():
            raise HTTPException(404, f"image {str(image)[:60]!r} is not in the datastore")
        if isinstance(store, TumorDatastore):
            try:
                store.check_complete(image)
            except InvalidUploadError as e:
                raise HTTPException(422, f"image refused: {e}") from e
        return True

    def _local_request(self, url: str, params: dict[str, Any], action: str) -> dict[str, Any] | None:
        """A request from a background process to its server, with the server's internal token."""
        token = os.environ.get(INTERNAL_TOKEN_ENV, "")
        response = requests.post(
            f"http://127.0.0.1:{settings.MONAI_LABEL_SERVER_PORT}{url}",
            json=params or {},
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=60,
        )
        if response.status_code != 200:
            logger.error("Failed to trigger %s: %s", action, response.text[:300])
            return None
        return response.json()

    def info(self) -> dict[str, Any]:
        """``/info``, with what annotators changed of the pre-segmentations per model version (``corrections``,
        :mod:`lib.corrections`); once the learned clicks model is served, a ``background`` label is listed too.

        3D Slicer's DeepEdit panel takes clicks only as landmarks of the listed labels, so background clicks need a
        ``background`` segment (the module leaves it out of submitted labels).
        """
        meta = super().info()
        if CLICK_NETWORK.served_as in meta["models"] and BACKGROUND not in meta["labels"]:
            meta["labels"] = [*meta["labels"], BACKGROUND]
        meta["corrections"] = self.corrections.summary()
        return meta

    def async_scoring(self, method: str | None, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Queue scoring of all methods instead of dropping it while an earlier scoring job still runs.

        A training run asks the server for scoring when it ends; stock MONAI Label posts to ``/scoring/{method}``,
        which refuses while a scoring job is running, so weights published just then would never be scored.
        ``/scoring/`` queues the request. These jobs run at a lower CPU priority (:mod:`lib.priority`).
        """
        if self._server_mode or method:
            return super().async_scoring(method, params)
        return self._local_request("/scoring/", params, "Scoring") or {}

    def next_sample(self, request: dict[str, Any]) -> dict[str, Any]:
        """Next image to label; an empty reply (no ``id``) means every image is labelled."""
        strategy = request.get("strategy") or next(iter(self._strategies))
        if strategy not in self._strategies:
            raise HTTPException(404, f"unknown strategy {strategy!r}; available: {', '.join(self._strategies)}")
        return super().next_sample({**request, "strategy": strategy})
