"""``/datastore`` and ``/activelearning``: images, labels, their info, the next sample and the dataset export."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from monailabel.endpoints.activelearning import sample
from monailabel.interfaces.app import MONAILabelApp
from starlette.background import BackgroundTask

from lib.auth import Role, allows
from lib.datastore import TumorDatastore
from lib.datastore.info import InvalidInfoError, client_info
from lib.datastore.names import FINAL, InvalidNameError, check_name, check_tag
from lib.datastore.validation import InvalidUploadError
from lib.server.options import OptionsError, check_client_id
from lib.server.routes.uploads import caller, json_object, received, volume_suffix
from lib.shown import shown

logger = logging.getLogger(__name__)

CHECKSUMS = ("SHA256", "SHA512", "MD5")  # what MONAI Label's file_checksum computes


def file_digest(path: str, algorithm: str) -> str:
    """The hexadecimal digest of a file (MONAI Label's ``file_checksum`` prefixes it with the algorithm, so its
    own ``check_sum`` never matched)."""
    digest = hashlib.new(algorithm.lower())
    with open(path, "rb") as f:
        while chunk := f.read(2**20):  # hashlib.file_digest needs Python 3.11; the project runs on 3.10
            digest.update(chunk)
    return digest.hexdigest()


def stored_info(params: str, what: str) -> dict[str, Any]:
    """An upload's ``params``, to be stored as its info: a JSON object of the client's own keys (422 otherwise)."""
    try:
        return client_info(json_object(params, "params"), what)
    except InvalidInfoError as e:
        raise HTTPException(422, str(e)) from None


def datastore_routes(instance: MONAILabelApp) -> APIRouter:
    """Uploads of images and labels (checked by :class:`lib.datastore.TumorDatastore`), and replies without paths."""
    router = APIRouter()
    # A strategy picks the image, then the pick is recorded (the strategies serve the least recently served image):
    # one pick at a time, so two annotators asking together are not sent the same image.
    picking = threading.Lock()

    def pick(strategy: str, client_id: str, user: str) -> dict[str, Any]:
        with picking:
            store = instance.datastore()
            for _ in range(len(store.list_images()) + 1):
                reply = sample(strategy, {"client_id": client_id}, user)
                if not reply.get("id") or not isinstance(store, TumorDatastore):
                    return reply
                try:  # a damaged file is not sent to an annotator; the strategies leave it out from now on
                    store.check_complete(reply["id"])
                    return reply
                except InvalidUploadError as e:
                    logger.warning("Next Sample skips image %s, damaged in the studies folder: %s", reply["id"], e)
            raise HTTPException(409, "every unlabelled image is damaged in the studies folder; see the server log")

    @router.put("/datastore")
    @router.put("/datastore/image")
    def upload_image(
        request: Request, file: Annotated[UploadFile, File()], image: str = "", params: Annotated[str, Form()] = "{}"
    ) -> dict[str, Any]:
        info = stored_info(params, "image")
        suffix = volume_suffix(file.filename)
        image_id = image or os.path.basename(file.filename or "")[: -len(suffix)]
        try:
            check_name(image_id, "image id")
        except InvalidNameError as e:
            raise HTTPException(422, str(e)) from None
        info["user"] = caller(request).name
        with received(file, image_id) as path:
            return {"image": instance.datastore().add_image(image_id, path, info)}

    @router.put("/datastore/label")
    def submit_label(
        request: Request,
        image: str,
        label: Annotated[UploadFile, File()],
        tag: str = FINAL,
        params: Annotated[str, Form()] = "{}",
    ) -> dict[str, Any]:
        user = caller(request)
        try:
            check_tag(tag)
        except InvalidNameError as e:
            raise HTTPException(422, str(e)) from None
        if tag != FINAL and not allows(user.role, Role.ADMIN):
            raise HTTPException(403, f"user {user.name!r} ({user.role}) may submit {FINAL} labels only")
        info = stored_info(params, "label")
        info.update(user=user.name, submitted=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        with received(label, image) as path:
            label_id = instance.datastore().save_label(image, path, tag, info)
        reply: dict[str, Any] = {"image": image, "label": label_id}
        corrections = getattr(instance, "corrections", None)
        if tag == FINAL and corrections is not None:
            # How much the annotator changed the pre-segmentation served for this image (lib.corrections).
            try:
                stored = instance.datastore().get_label_uri(label_id, FINAL)
            except Exception as e:  # noqa: BLE001 - recording must never fail a submit that was stored
                logger.warning("Submitted label of %s not compared with its pre-segmentation: %s", image, e)
                stored = None
            record = corrections.submitted(image, stored) if stored and os.path.isfile(stored) else None
            if record is not None:
                reply["changed"] = {k: record[k] for k in ("version", "dice", "voxels_changed")}
        return reply

    @router.post("/activelearning/{strategy}")
    async def next_sample(request: Request, strategy: str) -> dict[str, Any]:
        options = json_object(await request.body(), "strategy options")
        try:
            check_client_id(options)
        except OptionsError as e:
            raise HTTPException(422, str(e)) from None
        client_id = options.get("client_id") or caller(request).name
        # Strategies take no options of their own; the client's id is recorded with the pick.
        reply = await run_in_threadpool(pick, strategy, client_id, caller(request).name)
        return {k: v for k, v in reply.items() if k != "path"}

    @router.head("/datastore/image")
    def image_exists(image: str, check_sum: str = "") -> Response:
        """200 when the image exists (and, with ``check_sum`` ``[ALGORITHM:]digest``, holds those bytes), else 404."""
        store = instance.datastore()
        if image not in store.list_images():
            raise HTTPException(404, f"image {image!r} is not in the datastore")
        if check_sum:
            algorithm, _, digest = check_sum.rpartition(":")
            algorithm = algorithm.upper() or "SHA256"
            if algorithm not in CHECKSUMS:
                accepted = ", ".join(CHECKSUMS)
                raise HTTPException(422, f"check_sum: algorithm {shown(algorithm)} is not one of {accepted}")
            if not digest:
                raise HTTPException(422, "check_sum holds no digest: send [ALGORITHM:]hexadecimal digest")
            try:
                held = file_digest(store.get_image_uri(image), algorithm)
            except FileNotFoundError:
                raise HTTPException(404, f"image {image!r} has gone from the studies folder") from None
            if digest.lower() != held:
                raise HTTPException(404, f"image {image!r} does not hold those bytes (checksum differs)")
        return Response(status_code=200)

    @router.get("/datastore/image/info")
    def image_info(image: str) -> dict[str, Any]:
        store = instance.datastore()
        if image not in store.list_images():
            raise HTTPException(404, f"image {image!r} is not in the datastore")
        return {k: v for k, v in store.get_image_info(image).items() if k != "path"}

    @router.get("/datastore/label/info")
    def label_info(label: str, tag: str) -> dict[str, Any]:
        store = instance.datastore()
        if not store.get_label_uri(label, tag):
            raise HTTPException(404, f"image {label!r} has no {tag!r} label")
        return {k: v for k, v in store.get_label_info(label, tag).items() if k != "path"}

    @router.get("/datastore/dataset")
    def export_dataset(limit_cases: int | None = None) -> FileResponse:
        if limit_cases is not None and limit_cases < 1:
            raise HTTPException(422, "limit_cases must be at least 1")
        store = instance.datastore()
        if not store.datalist():
            raise HTTPException(404, "no labelled images to export yet")
        path = store.get_dataset_archive(limit_cases)  # a temporary file, removed once sent
        return FileResponse(path, filename="dataset.zip", background=BackgroundTask(os.remove, path))

    return router
