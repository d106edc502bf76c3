"""This app's versions of the routes that take uploads, options or credentials (see :mod:`lib.server.policy`).

MONAI Label's own versions parse ``params`` without checking it (500 on bad JSON), pass any option through
(``image`` paths, devices, Python paths), extract session archives as they come and write uploads to temp files
they may leave behind. These endpoints check everything first, keep uploads in a temporary folder removed on every
path, and answer a 4xx that names the problem and no server path.
"""
