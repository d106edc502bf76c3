"""This app's versions of the routes that take uploads, options or credentials (see :mod:`lib.server.policy`).

MONAI Label's own versions parse ``params`` without checking it (500 on bad JSON), pass any option through
(``image`` paths, devices, Python paths), extract session archives as they come and write uploads to temp files
they may leave behind. These endpoints check everything first, keep uploads in a temporary folder removed on every
path, and answer a 4xx that names the problem and no server path.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import BackgroundTasks, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, PlainTextResponse
from monailabel.endpoints.activelearning import sample
from monailabel.endpoints.infer import send_response
from monailabel.endpoints.train import run_model
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferType
from starlette.background import BackgroundTask

from lib.auth import Role, User, allows, issue_token
from lib.auth.throttle import LoginThrottle
from lib.checkpoint import CheckpointError, load_state, publish_checkpoint, read_checkpoint
from lib.config import MODELS
from lib.datastore.names import FINAL, InvalidNameError, check_name, check_tag
from lib.datastore.validation import InvalidUploadError, check_image
from lib.networks import build_network
from lib.server.guard import Access
from lib.server.options import OptionsError, check_infer_options, check_train_options, parse_json_object

logger = logging.getLogger(__name__)

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
MAX_LOG_LINES = 10_000


def volume_suffix(filename: str | None) -> str:
    """The volume file type of an upload's file name (its name itself is never used as a path)."""
    name = (filename or "").lower()
    for suffix in VOLUME_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise HTTPException(422, f"file {os.path.basename(name)[:60]!r} is not a volume: send {', '.join(VOLUME_SUFFIXES)}")


@contextmanager
def received(upload: UploadFile, stem: str) -> Iterator[str]:
    """The upload saved as ``<stem><suffix>`` in a temporary folder that is removed on leaving, on every path."""
    suffix = volume_suffix(upload.filename)
    with tempfile.TemporaryDirectory(prefix="tumor-upload-") as folder:
        path = os.path.join(folder, f"{stem}{suffix}")
        with open(path, "wb") as f:
            while chunk := upload.file.read(2**20):
                f.write(chunk)
        yield path


def _options(text: str | None, what: str) -> dict[str, Any]:
    try:
        return parse_json_object(text, what)
    except OptionsError as e:
        raise HTTPException(422, str(e)) from None


def _user(request: Request) -> User:
    return request.state.user


def session_reply(info: Any) -> dict[str, Any]:
    """A session as the client may see it: no server paths."""
    return {
        "name": info.name,
        "image": os.path.basename(info.image),
        "create_ts": info.create_ts,
        "last_access_ts": info.last_access_ts,
        "expiry": info.expiry,
    }


def _network_of(instance: MONAILabelApp, model: str) -> str:
    """The trained network (segmentation or clicks) an infer model serves; 404 for models without weights."""
    network = getattr(instance._infers[model], "model", None)
    if network not in MODELS:
        raise HTTPException(404, f"model {model!r} has no weights: it needs no training")
    return network


def _keep_aside(path: str, why: str) -> str:
    """Rename ``path`` (if it exists) to a time-stamped name beside it, so replaced or removed weights are kept."""
    kept = f"{path}.{datetime.now().strftime('%Y%m%d_%H%M%S_%f')}.{why}"
    if os.path.isfile(path):
        os.replace(path, kept)
    return kept


def create_api(instance: MONAILabelApp, access: Access, log_path: str, token_minutes: float) -> FastAPI:
    """The endpoints of :mod:`lib.server.policy` answered by this app.

    Args:
        instance: the running app.
        access: login settings.
        log_path: this server's log file (``GET /logs``).
        token_minutes: lifetime of a login token.
    """
    api = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    throttle = LoginThrottle()

    @api.get("/auth")
    def auth_enabled() -> dict[str, Any]:
        return {"enabled": access.users is not None, "client_id": "tumor-annotation", "realm": None}

    @api.post("/auth/token")
    def login(
        request: Request, username: Annotated[str, Form()] = "", password: Annotated[str, Form()] = ""
    ) -> dict[str, Any]:
        if access.users is None:
            raise HTTPException(400, "login is off on this server: no token is needed")
        client = request.client.host if request.client else "?"
        wait_s = throttle.wait_s(client)
        if wait_s > 0:
            logger.warning("Login refused for %r from %s: too many failed logins", username[:64], client)
            raise HTTPException(
                429,
                f"too many failed logins from this address: try again in {int(wait_s) + 1} s",
                headers={"Retry-After": str(int(wait_s) + 1)},
            )
        user = access.users.authenticate(username, password)
        if user is None:
            throttle.failed(client)
            logger.warning("Login refused for %r from %s", username[:64], client)
            raise HTTPException(401, "wrong user name or password", headers={"WWW-Authenticate": "Bearer"})
        throttle.succeeded(client)
        logger.info("Login: %s (%s) from %s", user.name, user.role, client)
        token = issue_token(access.users.secret, user.name, token_minutes)
        return {"access_token": token, "token_type": "bearer", "expires_in": int(token_minutes * 60)}

    @api.get("/auth/token/valid")
    def token_valid(request: Request) -> dict[str, Any]:
        user = _user(request)
        return {"username": user.name, "roles": [str(user.role)]}

    @api.put("/datastore")
    @api.put("/datastore/image")
    def upload_image(
        request: Request, file: Annotated[UploadFile, File()], image: str = "", params: Annotated[str, Form()] = "{}"
    ) -> dict[str, Any]:
        info = _options(params, "params")
        suffix = volume_suffix(file.filename)
        image_id = image or os.path.basename(file.filename or "")[: -len(suffix)]
        try:
            check_name(image_id, "image id")
        except InvalidNameError as e:
            raise HTTPException(422, str(e)) from None
        info["user"] = _user(request).name
        with received(file, image_id) as path:
            return {"image": instance.datastore().add_image(image_id, path, info)}

    @api.put("/datastore/label")
    def submit_label(
        request: Request,
        image: str,
        label: Annotated[UploadFile, File()],
        tag: str = FINAL,
        params: Annotated[str, Form()] = "{}",
    ) -> dict[str, Any]:
        user = _user(request)
        try:
            check_tag(tag)
        except InvalidNameError as e:
            raise HTTPException(422, str(e)) from None
        if tag != FINAL and not allows(user.role, Role.ADMIN):
            raise HTTPException(403, f"user {user.name!r} ({user.role}) may submit {FINAL} labels only")
        info = _options(params, "params")
        info.update(user=user.name, submitted=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        with received(label, image) as path:
            return {"image": image, "label": instance.datastore().save_label(image, path, tag, info)}

    @api.post("/activelearning/{strategy}")
    async def next_sample(request: Request, strategy: str) -> dict[str, Any]:
        raw = await request.body()
        options = _options(raw.decode("utf-8", errors="replace"), "strategy options")
        client_id = options.get("client_id") or _user(request).name
        if not isinstance(client_id, str) or len(client_id) > 128:
            raise HTTPException(422, "client_id must be text of at most 128 characters")
        # Strategies take no options of their own; the client's id is recorded with the pick.
        reply = await run_in_threadpool(sample, strategy, {"client_id": client_id}, _user(request).name)
        return {k: v for k, v in reply.items() if k != "path"}

    @api.get("/datastore/image/info")
    def image_info(image: str) -> dict[str, Any]:
        store = instance.datastore()
        if image not in store.list_images():
            raise HTTPException(404, f"image {image!r} is not in the datastore")
        return {k: v for k, v in store.get_image_info(image).items() if k != "path"}

    @api.get("/datastore/label/info")
    def label_info(label: str, tag: str) -> dict[str, Any]:
        store = instance.datastore()
        if not store.get_label_uri(label, tag):
            raise HTTPException(404, f"image {label!r} has no {tag!r} label")
        return {k: v for k, v in store.get_label_info(label, tag).items() if k != "path"}

    @api.get("/datastore/dataset")
    def export_dataset(limit_cases: int | None = None) -> FileResponse:
        if limit_cases is not None and limit_cases < 1:
            raise HTTPException(422, "limit_cases must be at least 1")
        store = instance.datastore()
        if not store.datalist():
            raise HTTPException(404, "no labelled images to export yet")
        path = store.get_dataset_archive(limit_cases)  # a temporary file, removed once sent
        return FileResponse(path, filename="dataset.zip", background=BackgroundTask(os.remove, path))

    @api.put("/model/{model}")
    def replace_weights(model: str, file: Annotated[UploadFile, File()]) -> dict[str, Any]:
        network = _network_of(instance, model)
        folder = instance.config.model_dir
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".upload-", dir=folder) as tmp:
            path = os.path.join(tmp, f"{network}.pt")
            with open(path, "wb") as f:
                while chunk := file.file.read(2**20):
                    f.write(chunk)
            try:
                state, meta = read_checkpoint(path, instance.config, network)
                load_state(build_network(instance.config, model=network), state, path)
            except CheckpointError as e:
                raise HTTPException(422, f"weights refused: {e}") from None
        served = instance.config.published_path(network)
        _keep_aside(served, "replaced")
        publish_checkpoint(
            state,
            {**meta, "uploaded": datetime.now(timezone.utc).isoformat(timespec="seconds")},
            served,
            instance.config,
            network,
        )
        return {"model": model, "checkpoint": os.path.basename(served)}

    @api.delete("/model/{model}")
    def remove_weights(model: str) -> dict[str, Any]:
        network = _network_of(instance, model)
        served = instance.config.published_path(network)
        if not os.path.isfile(served):
            raise HTTPException(404, f"model {model!r} has no trained weights to remove")
        kept = _keep_aside(served, "deleted")
        return {"model": model, "kept_as": os.path.basename(kept)}

    @api.post("/infer/{model}")
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
        options = _options(params, "params")
        task = instance._infers[model]
        try:
            check_infer_options(options, task.config(), instance.config.labels)
        except OptionsError as e:
            raise HTTPException(422, str(e)) from None
        if options.get("save_label") and not allows(_user(request).role, Role.ADMIN):
            raise HTTPException(403, "saving inference results as labels needs the admin role")
        if label is not None and "label" in options:
            raise HTTPException(422, "send either a label file or a 'label' name, not both")
        if task.type == InferType.SCRIBBLES and label is None:
            raise HTTPException(422, "no scribbles: send the scribble labelmap as the 'label' file")
        body: dict[str, Any] = {**options, "model": model}
        if session_id:
            sessions = instance.sessions()
            session = sessions.get_session(session_id) if sessions else None
            if session is None:
                raise HTTPException(404, f"session {session_id!r} does not exist or has expired")
            body["image"] = session.image
        elif image:
            body["image"] = image
        else:
            raise HTTPException(422, "name the image: ?image=<id> or ?session_id=<id>")
        with tempfile.TemporaryDirectory(prefix="tumor-infer-") as folder:
            if label is not None:
                body["label"] = path = os.path.join(folder, f"label{volume_suffix(label.filename)}")
                with open(path, "wb") as f:
                    while chunk := label.file.read(2**20):
                        f.write(chunk)
            result = instance.infer(body)
            return send_response(instance.datastore(), result, output, background_tasks)

    @api.put("/session")
    def create_session(
        files: Annotated[list[UploadFile], File()], uncompress: bool = False, expiry: int = 0
    ) -> dict[str, Any]:
        if uncompress:
            raise HTTPException(422, "archives are not accepted: send one volume file")
        if len(files) != 1:
            raise HTTPException(422, f"send one volume file, not {len(files)}")
        if not 0 <= expiry <= 7 * 24 * 3600:
            raise HTTPException(422, "expiry must be 0 (the server's default) to 604800 seconds")
        sessions = instance.sessions()
        if sessions is None:
            raise HTTPException(406, "sessions are off on this server")
        with received(files[0], "image") as path:
            try:
                check_image(path, instance.config.channels, instance.config.max_voxels)
            except InvalidUploadError as e:
                raise HTTPException(422, f"image refused: {e}") from None
            session_id, info = sessions.add_session(path, expiry)
        return {"session_id": session_id, "session_info": session_reply(info)}

    @api.get("/session/{session_id}")
    def get_session(session_id: str, image: bool = False) -> Any:
        sessions = instance.sessions()
        info = sessions.get_session(session_id) if sessions else None
        if info is None:
            raise HTTPException(404, f"session {session_id!r} does not exist or has expired")
        if image:
            return FileResponse(info.image, filename=os.path.basename(info.image))
        return session_reply(info)

    @api.delete("/session/{session_id}")
    def remove_session(session_id: str) -> dict[str, Any]:
        sessions = instance.sessions()
        info = sessions.get_session(session_id) if sessions else None
        if info is None:
            raise HTTPException(404, f"session {session_id!r} does not exist or has expired")
        sessions.remove_session(session_id)
        return session_reply(info)

    @api.post("/train")
    @api.post("/train/{trainer}")
    async def train(request: Request, trainer: str = "", run_sync: bool = False) -> Any:
        if run_sync:
            raise HTTPException(422, "run_sync is not offered: training runs in its own process; poll GET /train/")
        raw = await request.body()
        options = _options(raw.decode("utf-8", errors="replace"), "training options")
        names = [trainer] if trainer else list(instance._trainers)
        for name in names:
            try:
                check_train_options(options, instance._trainers[name].config())
            except OptionsError as e:
                raise HTTPException(422, str(e)) from None
        return run_model(trainer or names[0], options)

    @api.get("/logs")
    def logs(lines: int = 300) -> PlainTextResponse:
        if not 1 <= lines <= MAX_LOG_LINES:
            raise HTTPException(422, f"lines must be 1 to {MAX_LOG_LINES}")
        try:
            with open(log_path, errors="replace") as f:
                tail = f.readlines()[-lines:]
        except FileNotFoundError:
            tail = []
        return PlainTextResponse("".join(tail))

    return api
