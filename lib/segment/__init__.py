"""Batch pre-segmentation of a folder or a PACS (``tumor-segment``), with the server's auto segmentation."""
