"""Scribble- and click-based refinement (issue 3); the package is installed with ``lib`` from ``setup.cfg``."""
