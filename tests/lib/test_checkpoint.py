"""Publishing and reading weights-only checkpoints that record the architecture they fit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from lib.checkpoint import CheckpointError, load_weights, read_checkpoint, serving_checkpoint
from lib.config import AppConfig
from lib.networks import build_network
from lib.networks.descriptions import SEGMENTATION
from tests.support.checkpoints import publish_checkpoint

ConfigFactory = Callable[..., AppConfig]


def test_publish_then_read_round_trip(config: AppConfig) -> None:
    state = build_network(config.plan).state_dict()
    publish_checkpoint(state, {"run_id": "r1", "val_dice": 0.5}, SEGMENTATION.published_path(config.model_dir), config)

    loaded, meta = read_checkpoint(SEGMENTATION.published_path(config.model_dir), config.plan)

    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert meta == {"run_id": "r1", "val_dice": 0.5, "architecture": SEGMENTATION.architecture(config.plan)}
    # Weights only: the file loads without unpickling arbitrary objects.
    raw = torch.load(SEGMENTATION.published_path(config.model_dir), map_location="cpu", weights_only=True)
    assert set(raw) == {"model", "meta"}


def test_load_weights_fills_network(config: AppConfig) -> None:
    source = build_network(config.plan)
    publish_checkpoint(source.state_dict(), {"run_id": "r"}, SEGMENTATION.published_path(config.model_dir), config)
    target = build_network(config.plan)

    meta = load_weights(target, SEGMENTATION.published_path(config.model_dir), config.plan)

    assert meta["run_id"] == "r"
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


@pytest.mark.parametrize(
    ("served_with", "difference"),
    [
        ({"labels": "tumor,edema"}, r"'labels': \['tumor'\]"),
        ({"channels": "2"}, r"'channels': 1"),
        ({"features": "16"}, r"'features': 8"),
    ],
)
def test_checkpoint_for_other_architecture_is_refused(
    make_config: ConfigFactory, served_with: dict[str, str], difference: str
) -> None:
    trained = make_config()  # labels ('tumor',), 1 channel, 8 features
    publish_checkpoint(
        build_network(trained.plan).state_dict(),
        {"run_id": "old"},
        SEGMENTATION.published_path(trained.model_dir),
        trained,
    )
    served = make_config(**served_with)

    with pytest.raises(CheckpointError, match=f"was trained for .*{difference}.*but the app is configured for"):
        read_checkpoint(SEGMENTATION.published_path(served.model_dir), served.plan)


def test_bare_state_dict_of_other_network_does_not_fit(make_config: ConfigFactory, tmp_path: Path) -> None:
    config = make_config()
    path = tmp_path / "bare.pt"
    torch.save(build_network(make_config(labels="tumor,edema").plan).state_dict(), path)

    state, meta = read_checkpoint(str(path), config.plan)  # no metadata to check against

    assert meta == {}
    with pytest.raises(CheckpointError, match="does not fit the configured network"):
        load_weights(build_network(config.plan), str(path), config)
    assert state.keys() == build_network(config.plan).state_dict().keys()


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"garbage", "cannot read checkpoint"), (None, "holds no state dict")],
)
def test_unreadable_checkpoint(config: AppConfig, tmp_path: Path, content: bytes | None, match: str) -> None:
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save([1, 2, 3], path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint(str(path), config.plan)


def _nan_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    name = next(k for k, v in state.items() if v.is_floating_point())
    return {**state, name: torch.full_like(state[name], float("nan"))}


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (lambda state: {"model": state, "meta": "string"}, "its meta is a str, not a dictionary"),
        (lambda state: {"model": [1, 2, 3], "meta": {}}, "holds no state dict"),
        (lambda state: {"model": {1: torch.zeros(1)}}, "holds no state dict"),
        (lambda state: {"model": {"w": "text"}}, "holds no state dict"),
        (lambda state: {"model": _nan_weights(state), "meta": {}}, "holds NaN or infinite weights"),
    ],
    ids=["meta-not-a-dict", "model-a-list", "int-keys", "not-tensors", "nan-weights"],
)
def test_malformed_checkpoints_are_refused_by_name(
    config: AppConfig, tmp_path: Path, content: Callable[[dict], object], match: str
) -> None:
    # Each was a 500 from PUT /model before; a refusal here is the 422 that names the problem.
    path = tmp_path / "odd.pt"
    torch.save(content(build_network(config.plan).state_dict()), path)
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint(str(path), config.plan)


def test_serving_checkpoint_prefers_published(make_config: ConfigFactory, tmp_path: Path) -> None:
    start = tmp_path / "start.pt"
    torch.save(build_network(make_config().plan).state_dict(), start)
    config = make_config(checkpoint=str(start))

    assert serving_checkpoint(config) == str(start)
    publish_checkpoint(
        build_network(config.plan).state_dict(), {}, SEGMENTATION.published_path(config.model_dir), config
    )
    assert serving_checkpoint(config) == SEGMENTATION.published_path(config.model_dir)


def test_serving_checkpoint_none_without_weights(config: AppConfig) -> None:
    assert serving_checkpoint(config) is None


def test_publish_leaves_no_temporary_file(config: AppConfig) -> None:
    folder = Path(config.model_dir)
    for run in ("first", "second"):
        publish_checkpoint(
            build_network(config.plan).state_dict(),
            {"run_id": run},
            SEGMENTATION.published_path(config.model_dir),
            config,
        )

    assert [p.name for p in folder.iterdir()] == ["segmentation.pt"]
    assert read_checkpoint(SEGMENTATION.published_path(config.model_dir), config.plan)[1]["run_id"] == "second"


def test_failed_publish_keeps_previous_weights(config: AppConfig) -> None:
    publish_checkpoint(
        build_network(config.plan).state_dict(),
        {"run_id": "served"},
        SEGMENTATION.published_path(config.model_dir),
        config,
    )

    class Unsaveable(torch.Tensor):
        def detach(self) -> torch.Tensor:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        publish_checkpoint(
            {"w": Unsaveable()}, {"run_id": "broken"}, SEGMENTATION.published_path(config.model_dir), config
        )

    assert [p.name for p in Path(config.model_dir).iterdir()] == ["segmentation.pt"]
    assert read_checkpoint(SEGMENTATION.published_path(config.model_dir), config.plan)[1]["run_id"] == "served"
