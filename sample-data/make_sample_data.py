"""Build the project's ``sample-data/`` folder from the IBSI soft-tissue sarcoma CT cases.

Copies six CT images (``STS_xxx/CT_image.nii.gz``) into ``sample-data/`` and the expert
masks of two of them into ``sample-data/labels/final/``. Images are stored as int16 only
when every voxel is an integer within int16 range (otherwise they stay float32); masks are
stored as uint8 {0, 1}. Geometry is preserved exactly and every written file is read back
and checked.

Usage, from the repository root::

    python sample-data/make_sample_data.py [SOURCE_DIR]

``SOURCE_DIR`` defaults to ``../shared/data/sts`` relative to the repository root.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

CASES = ("STS_002", "STS_003", "STS_012", "STS_019", "STS_024", "STS_025")
LABELLED = ("STS_002", "STS_012")
GEOMETRY_TOLERANCE = 1e-4  # largest mask/image geometry difference fixed by CopyInformation

OUT_DIR = Path(__file__).resolve().parent
REPO_ROOT = OUT_DIR.parent
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "data" / "sts"

log = logging.getLogger("make_sample_data")


def geometry(image: sitk.Image) -> tuple[tuple, ...]:
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def geometry_diff(a: sitk.Image, b: sitk.Image) -> float:
    """Largest absolute difference between spacing, origin and direction of ``a`` and ``b``."""
    return max(float(np.max(np.abs(np.subtract(x, y)))) for x, y in zip(geometry(a)[1:], geometry(b)[1:], strict=True))


def same_geometry(a: sitk.Image, b: sitk.Image) -> bool:
    return a.GetSize() == b.GetSize() and all(
        np.allclose(x, y, rtol=0.0, atol=1e-6) for x, y in zip(geometry(a)[1:], geometry(b)[1:], strict=True)
    )


def to_int16_if_lossless(image: sitk.Image) -> sitk.Image:
    """Return ``image`` cast to int16 when that is lossless, else ``image`` unchanged."""
    values = sitk.GetArrayViewFromImage(image)
    info = np.iinfo(np.int16)
    lossless = (
        np.all(np.isfinite(values))
        and np.all(values == np.round(values))
        and values.min() >= info.min
        and values.max() <= info.max
    )
    if not lossless:
        log.warning(
            "values are not all int16 integers: keeping %s",
            image.GetPixelIDTypeAsString(),
        )
        return image
    converted = sitk.Cast(image, sitk.sitkInt16)
    if not np.array_equal(sitk.GetArrayViewFromImage(converted), values):
        log.warning(
            "int16 round trip changed values: keeping %s",
            image.GetPixelIDTypeAsString(),
        )
        return image
    return converted


def write_and_verify(image: sitk.Image, path: Path) -> None:
    """Write ``image`` compressed; check it reads back with the same type, geometry and voxels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    back = sitk.ReadImage(str(path))
    if back.GetPixelID() != image.GetPixelID():
        raise RuntimeError(f"{path}: pixel type changed to {back.GetPixelIDTypeAsString()}")
    if not same_geometry(back, image):
        raise RuntimeError(f"{path}: geometry changed on write: {geometry(back)} != {geometry(image)}")
    if not np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image)):
        raise RuntimeError(f"{path}: voxel values changed on write")
    log.info(
        "wrote %s (%s, %d bytes), verified",
        path,
        back.GetPixelIDTypeAsString(),
        path.stat().st_size,
    )


def build_case(case: str, source: Path) -> None:
    original = sitk.ReadImage(str(source / case / "CT_image.nii.gz"))
    image = to_int16_if_lossless(original)
    write_and_verify(image, OUT_DIR / f"{case}.nii.gz")
    if not np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(original)):
        raise RuntimeError(f"{case}: stored image differs from the source")

    if case not in LABELLED:
        return
    mask = sitk.ReadImage(str(source / case / "CT_mask.nii.gz"))
    if mask.GetSize() != image.GetSize():
        raise RuntimeError(f"{case}: mask size {mask.GetSize()} != image size {image.GetSize()}")
    diff = geometry_diff(mask, image)
    if diff >= GEOMETRY_TOLERANCE:
        raise RuntimeError(f"{case}: mask geometry differs from the image by {diff}")
    values = sitk.GetArrayViewFromImage(mask)
    if not set(np.unique(values).tolist()) <= {0, 1}:
        raise RuntimeError(f"{case}: unexpected mask values {np.unique(values)}")
    label = sitk.Cast(mask, sitk.sitkUInt8)
    if diff > 0.0:
        log.info("%s: copying image geometry onto the mask (max difference %.3g)", case, diff)
        label.CopyInformation(image)
    write_and_verify(label, OUT_DIR / "labels" / "final" / f"{case}.nii.gz")
    if not same_geometry(label, image):
        raise RuntimeError(f"{case}: label geometry differs from the image")


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    source = Path(argv[0]) if argv else DEFAULT_SOURCE
    if not source.is_dir():
        log.error("source folder not found: %s", source)
        return 1
    for case in CASES:
        build_case(case, source)
    total = sum(p.stat().st_size for p in OUT_DIR.rglob("*.nii.gz"))
    print(f"{len(CASES)} images, {len(LABELLED)} labels in {OUT_DIR} ({total / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
