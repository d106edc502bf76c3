"""Auto segmentation refuses a studies-folder image that is damaged, instead of segmenting zeros."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import HTTPException

from tests.synthetic import write_case

ROOT = Path(__file__).resolve().parents[2]


def tumor_app_class():
    spec = importlib.util.spec_from_file_location("tumor_main", ROOT / "apps" / "tumor" / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TumorApp


def test_a_truncated_image_is_a_422_and_a_whole_one_is_checked_once(tmp_path: Path) -> None:
    case = write_case(str(tmp_path), "case0", seed=0)
    app = SimpleNamespace(app_config=SimpleNamespace(max_voxels=10**8), _complete_files={})
    check = tumor_app_class()._check_complete

    check(app, case.image_path)
    assert app._complete_files == {
        case.image_path: (os.stat(case.image_path).st_mtime_ns, os.path.getsize(case.image_path))
    }

    data = Path(case.image_path).read_bytes()
    Path(case.image_path).write_bytes(data[: len(data) // 2])  # a copy cut short: ITK would read zeros
    with pytest.raises(HTTPException) as refused:
        check(app, case.image_path)
    assert refused.value.status_code == 422 and "image refused" in refused.value.detail
