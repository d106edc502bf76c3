"""Library of the tumour-annotation MONAI Label app: configuration, data pipeline, networks and tasks."""
