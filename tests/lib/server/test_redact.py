from __future__ import annotations

from collections import deque

from lib.server.redact import redact


def test_paths_lose_their_folders_and_the_rest_stays() -> None:
    reply = {
        "tracking_uri": "sqlite:////srv/tumor/model/mlflow.db",
        "details": deque(["Published weights /srv/tumor/model/clicks.pt (run 1)", "epoch 2/5, Dice 0.7"]),
        "nested": [{"conf": "{'model_dir': '/srv/tumor/model'}"}],
        "epoch": 2,
        "labels": ["tumor"],
    }
    assert redact(reply) == {
        "tracking_uri": "sqlite:///mlflow.db",
        "details": ["Published weights clicks.pt (run 1)", "epoch 2/5, Dice 0.7"],
        "nested": [{"conf": "{'model_dir': 'model'}"}],
        "epoch": 2,
        "labels": ["tumor"],
    }
