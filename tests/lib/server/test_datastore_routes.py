"""``HEAD /datastore/image`` and ``POST /scoring``: this app's answers where MONAI Label's gave a 500 or hung."""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lib.config import AppConfig
from lib.datastore import TumorDatastore
from lib.server.guard import ANONYMOUS
from lib.server.routes import datastore as datastore_routes_module
from lib.server.routes import scoring as scoring_routes_module
from lib.server.routes.datastore import datastore_routes
from lib.server.routes.scoring import scoring_routes
from tests.synthetic import write_case


@pytest.fixture
def studies(tmp_path: Path) -> Path:
    write_case(str(tmp_path / "studies"), "case0", seed=0)
    return tmp_path / "studies"


@pytest.fixture
def client(studies: Path, config: AppConfig) -> TestClient:
    return client_of(TumorDatastore(str(studies), config))


def client_of(store: TumorDatastore) -> TestClient:
    api = FastAPI()
    api.include_router(datastore_routes(SimpleNamespace(datastore=lambda: store)))

    @api.middleware("http")
    async def logged_in(request, call_next):  # as the guard leaves it when login is off
        request.state.user = ANONYMOUS
        return await call_next(request)

    return TestClient(api)


def test_head_says_whether_the_image_exists_and_holds_those_bytes(client: TestClient, studies: Path) -> None:
    content = (studies / "case0.nii.gz").read_bytes()
    sha256, md5 = hashlib.sha256(content).hexdigest(), hashlib.md5(content).hexdigest()
    assert client.head("/datastore/image?image=case0").status_code == 200
    assert client.head(f"/datastore/image?image=case0&check_sum={sha256}").status_code == 200
    # MONAI Label strips the algorithm with lstrip: a SHA256 digest starting with 2, 5 or 6 never matched.
    assert client.head(f"/datastore/image?image=case0&check_sum=SHA256:{sha256}").status_code == 200
    assert client.head(f"/datastore/image?image=case0&check_sum=md5:{md5}").status_code == 200
    assert client.head(f"/datastore/image?image=case0&check_sum=SHA256:{'0' * 64}").status_code == 404
    assert client.head("/datastore/image?image=nope").status_code == 404


def test_head_on_an_image_gone_from_the_folder_is_a_404(studies: Path, config: AppConfig) -> None:
    # Removed before the folder watcher has seen it go: the digest read the missing file, a 500.
    client = client_of(TumorDatastore(str(studies), config, auto_reload=False))
    (studies / "case0.nii.gz").unlink()
    reply = client.head(f"/datastore/image?image=case0&check_sum={'0' * 64}")
    assert reply.status_code == 404


@pytest.mark.parametrize("check_sum", ["sha1:abc", "FOO:bar", ":", "::::"])
def test_head_with_an_unknown_checksum_algorithm_is_a_422(client: TestClient, check_sum: str) -> None:
    assert client.head(f"/datastore/image?image=case0&check_sum={check_sum}").status_code == 422


@pytest.fixture
def scoring(monkeypatch) -> tuple[TestClient, list]:
    calls: list = []
    monkeypatch.setattr(scoring_routes_module, "run", lambda: calls.append("all") or {"epistemic": {}})
    monkeypatch.setattr(scoring_routes_module, "run_method", lambda method: calls.append(method) or {})
    api = FastAPI()
    api.include_router(scoring_routes())
    return TestClient(api), calls


def test_scoring_runs_with_the_servers_settings(scoring: tuple[TestClient, list]) -> None:
    client, calls = scoring
    assert client.post("/scoring", json={}).status_code == 200
    assert client.post("/scoring/epistemic").status_code == 200
    assert calls == ["all", "epistemic"]


@pytest.mark.parametrize(
    ("query", "body", "message"),
    [
        ("?run_sync=true", {}, "run_sync is not offered"),  # it held every other request for 80 s
        ("", {"epistemic": "x"}, "scoring takes no options"),  # a 500 before
        ("", {"epistemic": {"mc_samples": 3000}}, "scoring takes no options"),
        ("", {"epistemic": {"bundle_path": "/tmp"}}, "scoring takes no options"),
    ],
)
def test_scoring_refuses_options_and_waiting(scoring: tuple[TestClient, list], query: str, body, message: str) -> None:
    client, calls = scoring
    for path in ("/scoring", "/scoring/epistemic"):
        response = client.post(f"{path}{query}", json=body)
        assert response.status_code == 422 and message in response.json()["detail"]
    assert calls == []


def test_annotators_asking_together_get_different_images(client: TestClient, monkeypatch) -> None:
    # MONAI Label's strategy picks the least recently served image, and the pick is recorded after it: two
    # annotators asking at the same moment were both sent the same image, and one's label replaced the other's.
    served: dict[str, float] = {"case0": 0.0, "case1": 0.0, "case2": 0.0}

    def sample(strategy: str, params: dict, user: str) -> dict:
        image = min(served, key=served.get)  # the least recently served
        time.sleep(0.05)  # the strategy's work, between pick and record
        served[image] = time.monotonic()
        return {"id": image}

    monkeypatch.setattr(datastore_routes_module, "sample", sample)
    with ThreadPoolExecutor(3) as pool:
        picks = list(pool.map(lambda _: client.post("/activelearning/epistemic", json={}).json()["id"], range(3)))
    assert sorted(picks) == ["case0", "case1", "case2"]
