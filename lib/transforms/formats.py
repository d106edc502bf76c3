"""The volume file types the app reads and writes."""

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")  # longest first where one ends another (.nii.gz, .nii)
