"""The volume file types the app reads and writes."""

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")  # longest first where one ends another (.nii.gz, .nii)


def volume_suffix_of(name: str) -> str | None:
    """The volume suffix a file name ends with (``.nii.gz`` before ``.nii``), or None for other files."""
    return next((suffix for suffix in VOLUME_SUFFIXES if name.endswith(suffix)), None)
