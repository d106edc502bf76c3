"""``/infer`` and ``/session``: models run on datastore images or on a session's volume, nothing else."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse
from monailabel.endpoints.infer import send_response
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferType

from lib.auth import Role, allows
from lib.datastore.validation import InvalidUploadError, check_file, check_image
from lib.server.options import OptionsError, check_infer_options
from lib.server.routes.uploads import caller, json_object, received, save, volume_suffix
from lib.transforms.formats import volume_suffix_of

MAX_SESSION_EXPIRY_S = 7 * 24 * 3600


def session_reply(info: Any) -> dict[str, Any]:
    """A session as the client may see it: no server paths."""
    return {
        "name": info.name,
        "image": os.path.basename(info.image),
        "create_ts": info.create_ts,
        "last_access_ts": info.last_access_ts,
        "expiry": info.expiry,
    }


def named_result(result: dict[str, Any], model: str, background_tasks: BackgroundTasks) -> dict[str, Any]:
    """The result with its file renamed ``<model><suffix>`` in a folder of its own, removed once sent: the reply
    names the file (3D Slicer reads its type from the name), and no reply names a temporary file."""
    file = result.get("file") or result.get("label")
    if not file or not os.path.isfile(file):
        return result  # a label stored in the datastore (save_label), or none
    name = os.path.basename(file)
    suffix = volume_suffix_of(name.lower()) or os.path.splitext(name)[1]
    folder = tempfile.mkdtemp(prefix="tumor-result-")
    background_tasks.add_task(shutil.rmtree, folder, ignore_errors=True)
    named = os.path.join(folder, f"{model}{suffix}")
    shutil.move(file, named)
    return {**result, "file": named}


def inference_routes(instance: MONAILabelApp) -> APIRouter:
    """``POST /infer/{model}`` with checked options; sessions from one checked volume file."""
    router = APIRouter()

    def session_of(session_id: str) -> Any:
        sessions = instance.sessions()
        info = sessions.get_session(session_id) if sessions else None
        if info is None:
            raise HTTPException(404, f"session {session_id!r} does not exist or has expired")
        return info

    @router.post("/infer/{model}")
    def infer(
        request: Request,
        background_tasks: BackgroundTasks,
        model: str,
        image: str = "",
        session_id: str = "",
        output: str = "all",
        params: Annotated[str, Form()] = "{}",
        label: Annotated[UploadFile | None, File()] = None,
        file: Annotated[UploadFile | None, File()] = None,
    ) -> Any:
        if file is not None:
            raise HTTPException(422, "send the image with PUT /session/ and infer with its session_id")
        if output not in ("all", "image", "json"):
            raise HTTPException(422, f"output {output[:40]!r} is not accepted; accepted: all, image, json")
        options = json_object(params, "params")
        task = instance._infers[model]
        try:
            check_infer_options(options, task.config(), instance.app_config.plan.labels)
        except OptionsError as e:
            raise HTTPException(422, str(e)) from None
        if options.get("save_label") and not allows(caller(request).role, Role.ADMIN):
            raise HTTPException(403, "saving inference results as labels needs the admin role")
        if label is not None and "label" in options:
            raise HTTPException(422, "send either a label file or a 'label' name, not both")
        if task.type == InferType.SCRIBBLES and label is None:
            raise HTTPException(422, "no scribbles: send the scribble labelmap as the 'label' file")
        if not (session_id or image):
            raise HTTPException(422, "name the image: ?image=<id> or ?session_id=<id>")
        body: dict[str, Any] = {**options, "model": model}
        body["image"] = session_of(session_id).image if session_id else image
        with tempfile.TemporaryDirectory(prefix="tumor-infer-") as folder:
            if label is not None:
                body["label"] = save(label, os.path.join(folder, f"label{volume_suffix(label.filename)}"))
                try:
                    check_file(body["label"], instance.app_config.max_voxels)
                except InvalidUploadError as e:
                    raise HTTPException(422, f"label refused: {e}") from None
            result = named_result(instance.infer(body), model, background_tasks)
            return send_response(instance.datastore(), result, output, background_tasks)

    @router.put("/session")
    def create_session(
        files: Annotated[list[UploadFile], File()], uncompress: bool = False, expiry: int = 0
    ) -> dict[str, Any]:
        if uncompress:
            raise HTTPException(422, "archives are not accepted: send one volume file")
        if len(files) != 1:
            raise HTTPException(422, f"send one volume file, not {len(files)}")
        if not 0 <= expiry <= MAX_SESSION_EXPIRY_S:
            raise HTTPException(422, f"expiry must be 0 (the server's default) to {MAX_SESSION_EXPIRY_S} seconds")
        sessions = instance.sessions()
        if sessions is None:
            raise HTTPException(406, "sessions are off on this server")
        with received(files[0], "image") as path:
            try:
                # One stacked volume.
                plan, max_voxels = instance.app_config.plan, instance.app_config.max_voxels
                check_image(path, plan.channels, max_voxels, model_spacing=plan.spacing)
            except InvalidUploadError as e:
                raise HTTPException(422, f"image refused: {e}") from None
            session_id, info = sessions.add_session(path, expiry)
        return {"session_id": session_id, "session_info": session_reply(info)}

    @router.get("/session/{session_id}")
    def get_session(session_id: str, image: bool = False) -> Any:
        info = session_of(session_id)
        if image:
            return FileResponse(info.image, filename=os.path.basename(info.image))
        return session_reply(info)

    @router.delete("/session/{session_id}")
    def remove_session(session_id: str) -> dict[str, Any]:
        info = session_of(session_id)
        instance.sessions().remove_session(session_id)
        return session_reply(info)

    return router
