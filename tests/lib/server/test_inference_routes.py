from __future__ import annotations

import asyncio
import os
import tempfile
from types import SimpleNamespace

from fastapi import BackgroundTasks
from fastapi.testclient import TestClient

from lib.server.api import create_api
from lib.server.guard import Access
from lib.server.routes.inference import named_result


def test_the_result_is_sent_under_the_models_name_and_removed_after() -> None:
    handle, file = tempfile.mkstemp(prefix="tmp", suffix=".nii.gz")  # as an infer task leaves its result
    os.write(handle, b"result")
    os.close(handle)
    tasks = BackgroundTasks()

    result = named_result({"file": file, "params": {}}, "segmentation", tasks)

    assert os.path.basename(result["file"]) == "segmentation.nii.gz"  # no temporary name; the type kept
    assert open(result["file"], "rb").read() == b"result" and not os.path.exists(file)
    asyncio.run(tasks())  # once the reply is sent
    assert not os.path.exists(os.path.dirname(result["file"]))


def test_a_label_stored_in_the_datastore_is_left_as_it_is() -> None:
    result = {"label": "case0", "tag": "original", "params": {}}  # save_label: the reply sends the stored label
    assert named_result(result, "segmentation", BackgroundTasks()) == result


def test_a_malformed_field_is_named_not_echoed(tmp_path) -> None:
    instance = SimpleNamespace(app_config=SimpleNamespace(model_dir=str(tmp_path)), _trainers={})
    api = create_api(instance, Access.create(None), str(tmp_path / "server.log"), token_minutes=5)
    big = "x" * 900_000
    response = TestClient(api).put("/datastore/image?image=case9", data={"file": big})  # text, not a file
    assert response.status_code == 422 and len(response.content) < 1000
    assert response.json()["detail"][0]["loc"] == ["body", "file"]
