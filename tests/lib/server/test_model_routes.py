"""``PUT`` and ``DELETE /model/{model}``: the admin replaces or removes the served weights, and nothing is lost."""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lib.checkpoint import Weights, publish, read_checkpoint
from lib.config import AppConfig
from lib.networks import build_network
from lib.networks.descriptions import SEGMENTATION
from lib.server.routes.training import training_routes

ConfigFactory = Callable[..., AppConfig]


def client(config: AppConfig) -> TestClient:
    """The training routes of an app configured by ``config`` (no trainer is started by these tests)."""
    api = FastAPI()
    api.include_router(training_routes(SimpleNamespace(app_config=config, _trainers={})))
    return TestClient(api)


def checkpoint(config: AppConfig, path: Path, run_id: str) -> bytes:
    """A checkpoint of ``config``'s plan written to ``path``; its bytes."""
    publish(
        [Weights(build_network(config.plan).state_dict(), {"run_id": run_id}, str(path))], config.plan, [SEGMENTATION]
    )
    return path.read_bytes()


def kept(config: AppConfig, why: str) -> list[str]:
    return sorted(f for f in os.listdir(config.model_dir) if f.endswith(f".{why}"))


def test_replacing_keeps_the_old_weights_and_serves_the_new(config: AppConfig, tmp_path: Path) -> None:
    served = Path(SEGMENTATION.published_path(config.model_dir))
    old = checkpoint(config, served, "old")
    new = checkpoint(config, tmp_path / "new.pt", "new")
    response = client(config).put("/model/segmentation", files={"file": ("new.pt", new)})
    assert response.status_code == 200, response.text
    assert read_checkpoint(str(served), config.plan)[1]["run_id"] == "new"
    assert [(Path(config.model_dir) / f).read_bytes() for f in kept(config, "replaced")] == [old]


def test_weights_for_another_plan_are_refused_and_the_served_ones_stay(
    make_config: ConfigFactory, config: AppConfig, tmp_path: Path
) -> None:
    served = Path(SEGMENTATION.published_path(config.model_dir))
    old = checkpoint(config, served, "old")
    wider = checkpoint(make_config(features="16"), tmp_path / "wider.pt", "wider")
    for body, reason in [(wider, "trained for"), (b"junk", "cannot read")]:
        response = client(config).put("/model/segmentation", files={"file": ("w.pt", io.BytesIO(body))})
        assert response.status_code == 422 and reason in response.json()["detail"], response.text
    assert served.read_bytes() == old and kept(config, "replaced") == []


def test_deleting_keeps_the_weights_aside_and_says_the_starting_checkpoint_is_served(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    start = tmp_path / "start.pt"
    checkpoint(make_config(checkpoint="none"), start, "start")
    config = make_config(checkpoint=str(start))
    published = checkpoint(config, Path(SEGMENTATION.published_path(config.model_dir)), "trained here")
    response = client(config).delete("/model/segmentation")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["serving"] == "start.pt (the starting checkpoint)"
    assert (Path(config.model_dir) / body["kept_as"]).read_bytes() == published
    assert not os.path.exists(SEGMENTATION.published_path(config.model_dir))
    again = client(config).delete("/model/segmentation")
    assert again.status_code == 404 and "no trained weights" in again.json()["detail"]


def test_deleting_the_only_weights_says_nothing_is_served(config: AppConfig) -> None:
    checkpoint(config, Path(SEGMENTATION.published_path(config.model_dir)), "trained here")
    body = client(config).delete("/model/segmentation").json()
    assert body["serving"].startswith("nothing: the model answers 409 until trained")


def test_deleting_a_single_network_over_a_starting_ensemble_says_a_restart_serves_it(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    """The plan follows the weights served at start-up: published single-network weights make a single-network
    plan, which the starting ensemble does not fit until the server restarts (and sizes its plan from it)."""
    single = make_config(checkpoint="none")
    start = tmp_path / "ensemble.pt"
    checkpoint(dataclasses.replace(single, plan=dataclasses.replace(single.plan, ensemble=2)), start, "ensemble")
    checkpoint(single, Path(SEGMENTATION.published_path(single.model_dir)), "trained here")
    config = make_config(checkpoint=str(start))
    assert config.plan.ensemble == 1  # the published single network decided
    body = client(config).delete("/model/segmentation").json()
    assert body["serving"].startswith("nothing until the server restarts: checkpoint ensemble.pt was trained for")
    assert make_config(checkpoint=str(start)).plan.ensemble == 2  # as a restart would see it


@pytest.mark.parametrize("model", ["scribbles", "nope"])
def test_models_without_weights_are_404(config: AppConfig, model: str) -> None:
    for response in (
        client(config).delete(f"/model/{model}"),
        client(config).put(f"/model/{model}", files={"file": ("w.pt", b"x")}),
    ):
        assert response.status_code == 404 and "has no weights" in response.json()["detail"]


def test_the_ensemble_checkpoint_loads_whole(config: AppConfig, tmp_path: Path) -> None:
    """An ensemble's state dict (members.i.*) is what PUT accepts for an ensemble plan."""
    plan = dataclasses.replace(config.plan, ensemble=2)
    ensemble_config = dataclasses.replace(config, plan=plan)
    body = checkpoint(ensemble_config, tmp_path / "e.pt", "e")
    response = client(ensemble_config).put("/model/segmentation", files={"file": ("e.pt", body)})
    assert response.status_code == 200, response.text
    state = torch.load(SEGMENTATION.published_path(config.model_dir), weights_only=True)["model"]
    assert any(k.startswith("members.1.") for k in state)
