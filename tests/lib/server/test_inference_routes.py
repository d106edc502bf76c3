from __future__ import annotations

import asyncio
import os
import tempfile

from fastapi import BackgroundTasks

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
