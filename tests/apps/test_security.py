"""A server on a hospital network: login as 3D Slicer speaks it, roles, and hostile requests that change nothing."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import SimpleITK as sitk

from lib.auth import Role, UserStore, issue_token
from lib.server.policy import RULES
from tests.apps.conftest import TINY
from tests.apps.test_server import LABEL_INFO, poll, train
from tests.support.server import APP, start_server, stop_server, wait_until_up
from tests.support.slicer import SlicerLogic, slicer_client_module
from tests.synthetic import SyntheticCase, write_case

pytestmark = pytest.mark.integration

PASSWORDS = {"anna": "annotator pw", "rita": "reviewer pw", "adam": "admin pw!"}
ROLES = {"anna": Role.ANNOTATOR, "rita": Role.REVIEWER, "adam": Role.ADMIN}
MAX_UPLOAD_MB = 1


@dataclass
class SecureServer:
    url: str
    studies: str
    model_dir: str
    tmpdir: str  # the server process's TMPDIR
    users: UserStore
    cases: dict[str, SyntheticCase]
    log_path: str
    root: str

    def headers(self, user: str) -> dict[str, str]:
        token = requests.post(
            f"{self.url}/auth/token", data={"username": user, "password": PASSWORDS[user]}, timeout=30
        ).json()["access_token"]
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureServer]:
    """Login on (three users, one per role), 1 MiB uploads, three synthetic cases, the server's own TMPDIR."""
    root = tmp_path_factory.mktemp("secure")
    studies, model_dir, tmpdir = str(root / "studies"), str(root / "model"), str(root / "server-tmp")
    os.makedirs(tmpdir)
    users = UserStore.create(str(root / "users.json"))
    for name, role in ROLES.items():
        users.add(name, role, PASSWORDS[name])
    cases = {f"case{i}": write_case(studies, f"case{i}", seed=i, label_folder=str(root / "truth")) for i in range(3)}
    conf = {**TINY, "model_dir": model_dir, "users": users.path, "max_upload_mb": str(MAX_UPLOAD_MB)}
    log = str(root / "server.log")
    process, url = start_server(APP, studies, conf, log, env={"TMPDIR": tmpdir})
    try:
        wait_until_up(process, url)
        yield SecureServer(url, studies, model_dir, tmpdir, users, cases, log, str(root))
    finally:
        stop_server(process)


def snapshot(*folders: str) -> dict[str, str]:
    """Every file under ``folders`` (hidden files included), or the file itself, with its SHA-256; the server's log
    (``<model_dir>/logs``) is left out."""
    files = {}
    for folder in folders:
        if os.path.isfile(folder):
            files[folder] = hashlib.sha256(open(folder, "rb").read()).hexdigest()
        for parent, _, names in os.walk(folder):
            if os.path.basename(parent) == "logs":
                continue
            for name in names:
                path = os.path.join(parent, name)
                with open(path, "rb") as f:
                    files[path] = hashlib.sha256(f.read()).hexdigest()
    return files


def test_slicer_module_logs_in_and_runs_the_loop(secure: SecureServer, tmp_path) -> None:
    module = slicer_client_module()
    bare = module.MONAILabelClient(secure.url, tmpdir=str(tmp_path), client_id="slicer")
    assert bare.auth_enabled()
    with pytest.raises(module.MONAILabelClientException, match="Status: 401"):
        bare.auth_token("anna", "not her password")
    with pytest.raises(module.MONAILabelClientException, match="Status: 401"):
        bare.info()  # no token
    client = SlicerLogic(secure.url, str(tmp_path), "anna", PASSWORDS["anna"])
    assert client.client().auth_valid_token()

    info = client.info()
    assert info["labels"] == ["tumor"] and info["datastore"]["total"] == 3
    sample = client.next_sample("random", {})
    assert sample["id"] in secure.cases and "path" not in sample
    for case in ("case0", "case1"):
        client.save_label(case, secure.cases[case].label_path, params=LABEL_INFO)
    datastore = json.load(open(os.path.join(secure.studies, "datastore_v2.json")))
    assert datastore["objects"]["case0"]["labels"]["final"]["info"]["user"] == "anna"  # who submitted it

    # As the module sends options: the config's values from /info, the first item of each list (getParamsFromConfig).
    def slicer_options(section: str, name: str) -> dict[str, Any]:
        return {k: v[0] if isinstance(v, list) else v for k, v in info[section][name]["config"].items()}

    status = train(client, {**slicer_options("trainers", "segmentation"), "max_epochs": 1})
    assert status["status"] == "DONE"
    options = {**slicer_options("models", "segmentation"), "result_extension": ".nrrd", "result_dtype": "uint8"}
    result, params = client.infer("segmentation", "case2", options)
    assert sitk.ReadImage(result).GetSize() == sitk.ReadImage(secure.cases["case2"].image_path).GetSize()
    assert params["label_names"] == {"tumor": 1}
    # A volume that is not in the datastore goes through a session, as the module sends a local volume.
    session_id = client.create_session(secure.cases["case2"].image_path)["session_id"]
    session = client.get_session(session_id)
    assert session["image"] == "image.nii.gz" and not any("/" in str(v) for v in session.values())
    # In this server's own folder: another server of the machine cannot serve it to whoever names its id.
    assert os.path.isdir(os.path.join(secure.model_dir, "sessions", session_id))
    from_session, _ = client.infer("segmentation", "", {"result_extension": ".nrrd"}, session_id=session_id)
    assert (
        sitk.GetArrayFromImage(sitk.ReadImage(from_session)) == sitk.GetArrayFromImage(sitk.ReadImage(result))
    ).all()
    # The finished run asked its server for scoring with the server's internal token, which login lets through.
    poll(lambda: "epistemic_entropy" in client.datastore()["objects"]["case2"]["image"]["info"], "scoring")


def test_anonymous_and_invalid_tokens_get_401_everywhere_but_login(secure: SecureServer) -> None:
    assert requests.get(f"{secure.url}/auth/", timeout=30).json()["enabled"] is True
    tokens = {
        "none": {},
        "malformed": {"Authorization": "Bearer not-a-token"},
        "not bearer": {"Authorization": f"Basic {secure.headers('adam')['Authorization'][7:]}"},
        "expired": {"Authorization": f"Bearer {issue_token(secure.users.secret, 'adam', minutes=-1)}"},
        "another server's": {"Authorization": f"Bearer {issue_token('x' * 32, 'adam', minutes=5)}"},
        "unknown user": {"Authorization": f"Bearer {issue_token(secure.users.secret, 'eve', minutes=5)}"},
    }
    protected = [rule for rule in RULES if rule.role is not None]
    for rule in protected:
        path = rule.pattern.pattern.strip("^$").replace("/?", "/")
        path = path.replace("(?P<model>[^/]+)", "segmentation").replace("(?P<strategy>[^/]+)", "random")
        path = path.replace("(?P<trainer>[^/]+)", "segmentation").replace("(?P<method>[^/]+)", "epistemic")
        path = path.replace("(?P<session_id>[^/]+)", "abc").replace("\\", "")
        for method in rule.methods:
            for what, headers in tokens.items():
                response = requests.request(method, f"{secure.url}{path}?image=case0", headers=headers, timeout=30)
                assert response.status_code == 401, (method, path, what, response.text)
    for method, path in (
        ("GET", "/batch/infer"),
        ("POST", "/infer/nope?image=..%2Fx"),
        ("PUT", "/datastore/?image=%00"),
    ):
        assert requests.request(method, f"{secure.url}{path}", timeout=30).status_code == 401  # nothing else said
    detail = requests.get(f"{secure.url}/info/", headers=tokens["expired"], timeout=30).json()["detail"]
    assert "expired" in detail
    for form in ({}, {"username": "adam"}, {"username": "adam", "password": "x" * 5000}):
        response = requests.post(f"{secure.url}/auth/token", data=form, timeout=30)
        assert response.status_code == 401 and response.json()["detail"] == "wrong user name or password"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/info/", {"anna", "rita", "adam"}),
        ("GET", "/datastore/label?label=case0&tag=final", {"rita", "adam"}),
        ("GET", "/datastore/label/info?label=case0&tag=final", {"rita", "adam"}),
        ("GET", "/logs/?lines=50", {"adam"}),
        ("GET", "/datastore/dataset", {"adam"}),
        ("GET", "/model/info/segmentation", {"adam"}),
        ("DELETE", "/datastore/label?id=nope&tag=final", {"adam"}),
        ("DELETE", "/datastore/image?id=nope", {"adam"}),
        ("POST", "/scoring/epistemic", {"adam"}),
        ("GET", "/batch/infer", {"adam"}),
        ("DELETE", "/batch/infer", {"adam"}),
    ],
)
def test_roles(secure: SecureServer, method: str, path: str, allowed: set[str]) -> None:
    for user in ROLES:
        response = requests.request(method, f"{secure.url}{path}", headers=secure.headers(user), timeout=60)
        if user in allowed:
            assert response.status_code != 403, (user, response.text)
        else:
            assert response.status_code == 403, (user, response.text)
            assert f"{Role.ADMIN if 'rita' not in allowed else Role.REVIEWER} needed" in response.json()["detail"]


def test_only_admins_submit_other_tags_and_read_logs(secure: SecureServer) -> None:
    requests.post(f"{secure.url}/auth/token", data={"username": "anna", "password": "wrong password"}, timeout=30)
    label = open(secure.cases["case1"].label_path, "rb").read()
    for user, status in (("anna", 403), ("rita", 403), ("adam", 200)):
        response = requests.put(
            f"{secure.url}/datastore/label?image=case1&tag=original",
            files={"label": ("case1.nii.gz", label)},
            data={"params": json.dumps(LABEL_INFO)},
            headers=secure.headers(user),
            timeout=60,
        )
        assert response.status_code == status, response.text
    logs = requests.get(f"{secure.url}/logs/?lines=2000", headers=secure.headers("adam"), timeout=30).text
    assert "Login: adam (admin)" in logs and "Login refused for 'anna'" in logs


def gz_truncated(path: str) -> bytes:
    data = open(path, "rb").read()
    return data[: len(data) * 3 // 4]


def header_bomb(folder: str) -> bytes:
    """A file that declares 1024x1024x256 voxels and holds 400 bytes."""
    path = os.path.join(folder, "bomb.nii")
    sitk.WriteImage(sitk.Image(1024, 1024, 256, sitk.sitkUInt8), path)
    with open(path, "rb") as f:
        return f.read(400)


def tar_with(member: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = b"print('owned')"
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_hostile_requests_get_a_clear_4xx_and_change_nothing(secure: SecureServer, tmp_path) -> None:
    admin = secure.headers("adam")  # the role that may do most: refusals here hold for every role
    batch, final = f"{secure.url}/batch/infer", {"label_tag": "final"}
    case = secure.cases["case0"]
    image_bytes = open(case.image_path, "rb").read()
    label_bytes = open(case.label_path, "rb").read()
    requests.put(  # a labelled image, which an upload must not replace
        f"{secure.url}/datastore/label?image=case0",
        files={"label": ("l.nii.gz", label_bytes)},
        data={"params": json.dumps(LABEL_INFO)},
        headers=admin,
        timeout=60,
    ).raise_for_status()
    as_nrrd = tmp_path / "case2.nrrd"
    sitk.WriteImage(sitk.ReadImage(secure.cases["case2"].image_path), str(as_nrrd))
    wrong_grid = tmp_path / "wrong.nii.gz"
    sitk.WriteImage(sitk.Image(10, 10, 10, sitk.sitkUInt8), str(wrong_grid))
    before = snapshot(secure.studies, secure.model_dir, secure.users.path)
    outside_before = set(os.listdir(os.path.dirname(secure.root)))
    temporary_before = sorted(os.listdir(secure.tmpdir))
    # Only MONAI Label's logging configuration, written at start-up: the earlier tests left nothing either.
    assert [name for name in temporary_before if not name.endswith(".json")] == []

    def put_label(query: str, content: bytes, params: Any = LABEL_INFO, name: str = "l.nii.gz") -> requests.Response:
        data = {"params": params if isinstance(params, str) else json.dumps(params)}
        return requests.put(
            f"{secure.url}/datastore/label?{query}", files={"label": (name, content)}, data=data, headers=admin
        )

    def put_image(query: str, content: bytes, name: str = "x.nii.gz", params: str = "{}") -> requests.Response:
        files, data = {"file": (name, content)}, {"params": params}
        return requests.put(f"{secure.url}/datastore/?{query}", files=files, data=data, headers=admin)

    def infer(query: str, params: Any, label: bytes | None = None, model: str = "segmentation") -> requests.Response:
        files = {"label": ("s.nii.gz", label)} if label else None
        data = {"params": params if isinstance(params, str) else json.dumps(params)}
        return requests.post(f"{secure.url}/infer/{model}?{query}", data=data, files=files, headers=admin)

    def train(query: str, options: Any) -> requests.Response:
        return requests.post(f"{secure.url}/train/segmentation?{query}", json=options, headers=admin)

    def session(query: str, files: list) -> requests.Response:
        return requests.put(f"{secure.url}/session/?{query}", files=files, headers=admin)

    big = os.urandom(2 * MAX_UPLOAD_MB * 2**20)

    def chunks() -> Iterator[bytes]:  # a well-formed upload without Content-Length (chunked), past the limit
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.nii.gz"\r\n\r\n'
        for _ in range(4 * MAX_UPLOAD_MB):
            yield os.urandom(2**20)

    chunked = requests.put(
        f"{secure.url}/datastore/?image=new5",
        data=chunks(),
        headers={**admin, "Content-Type": "multipart/form-data; boundary=x"},
    )
    one = open(secure.cases["case1"].label_path, "rb").read()  # case1's own label
    bad_info = {"label_info": [{"name": "x", "idx": 1}]}
    outside = {"result_extension": "/../../x.nrrd"}
    two_files = [("files", ("a.nii.gz", image_bytes)), ("files", ("b.nii.gz", image_bytes))]
    truncated_file = [("files", ("a.nii.gz", gz_truncated(case.image_path)))]
    archive = [("files", ("a.tgz", tar_with("../../x.py")))]
    junk = {"file": ("m.pt", b"junk")}
    cases: list[tuple[str, requests.Response, int, str]] = [
        ("label tag leaving the studies", put_label("image=case1&tag=../../somewhere", one), 422, "tag"),
        ("other tag, wrong grid", put_label("image=case1&tag=original", wrong_grid.read_bytes()), 422, "grid"),
        ("label, truncated", put_label("image=case1", gz_truncated(case.label_path)), 422, "truncated"),
        ("label, params not JSON", put_label("image=case1", one, params="{oops"), 422, "not valid JSON"),
        ("label, params a list", put_label("image=case1", one, params="[1]"), 422, "JSON object"),
        ("label, unknown segment", put_label("image=case1", one, bad_info), 422, "not a label"),
        ("label of an id with NUL", put_label("image=case%00", one), 422, "plain name"),
        ("label, label_info not a list", put_label("image=case1", one, {"label_info": "abc"}), 422, "label_info"),
        ("label, params with NaN", put_label("image=case1", one, params='{"a": NaN}'), 422, "NaN"),
        ("label of an id with a file type", put_label("image=case1.nii.gz", one), 422, "file type"),
        ("image id with U+0085", put_image("image=a%C2%85b", image_bytes), 422, "invisible"),
        ("image, the server's key", put_image("image=new6", image_bytes, params='{"strategy": "x"}'), 422, "strategy"),
        ("label of a 300-character id", put_label("image=" + "a" * 300, one), 422, "300 characters"),
        ("image, truncated", put_image("image=new1", gz_truncated(case.image_path)), 422, "truncated"),
        ("image, header bomb", put_image("image=new2", header_bomb(str(tmp_path)), "b.nii"), 422, "voxels"),
        ("image replacing a labelled one", put_image("image=case0", image_bytes), 409, "has labels"),
        (
            "image under its id in another format",
            put_image("image=case2", as_nrrd.read_bytes(), "c.nrrd"),
            409,
            ".nii.gz",
        ),
        ("image id leaving the studies", put_image("image=../evil", image_bytes), 422, "plain name"),
        ("image, not a volume name", put_image("image=new3", image_bytes, "x.py"), 422, "not a volume"),
        ("body over the limit", put_image("image=new4", big), 413, "larger than the server accepts"),
        ("chunked body over the limit", chunked, 413, "Content Too Large"),
        ("infer, absolute image path", infer(f"image={case.image_path}", {}), 422, "plain name"),
        ("infer, image in params", infer("image=case1", {"image": case.image_path}), 422, "not accepted"),
        ("infer, label path", infer("image=case1", {"label": case.label_path}, model="clicks"), 422, "not a label"),
        ("infer, bad tag", infer("image=case1", {"save_label": True, "label_tag": "../x"}), 422, "label_tag"),
        ("infer, result leaving temp", infer("image=case1", outside), 422, "result_extension"),
        ("infer, device", infer("image=case1", {"device": "cuda:3"}), 422, "device"),
        ("infer, params not JSON", infer("image=case1", "nope"), 422, "not valid JSON"),
        ("infer, bad points", infer("image=case1", {"foreground": [[1, 2]]}, model="clicks"), 422, "foreground"),
        ("infer, point outside", infer("image=case1", {"foreground": [[999, 0, 0]]}, model="clicks"), 422, "outside"),
        (
            "infer, truncated scribbles",
            infer("image=case1", {}, gz_truncated(case.label_path), "scribbles"),
            422,
            "truncated",
        ),
        ("infer, bad label_info", infer("image=case1", {"label_info": "x"}, one, "scribbles"), 422, "label_info"),
        ("infer, unknown image", infer("image=nope", {}), 404, "not in the datastore"),
        ("infer, unknown session", infer("session_id=nope", {}), 404, "session"),
        (
            "session, archive",
            session("uncompress=true", archive),
            422,
            "archive",
        ),
        ("session, two files", session("", two_files), 422, "one volume"),
        ("session, truncated", session("", truncated_file), 422, "truncated"),
        ("train, Python path", train("", {"bundle_path": str(tmp_path)}), 422, "bundle_path"),
        ("train, tracking elsewhere", train("", {"tracking_uri": f"sqlite:///{tmp_path}/x.db"}), 422, "tracking_uri"),
        ("train, another device", train("", {"device": "cuda:3"}), 422, "fixed"),
        ("train, bad epochs", train("", {"max_epochs": "many"}), 422, "max_epochs"),
        ("train, run_sync", train("run_sync=true", {}), 422, "run_sync"),
        ("train, not an object", train("", [1, 2]), 422, "JSON object"),
        ("train, client_id too long", train("", {"client_id": "a" * 200_000}), 422, "client_id"),
        (
            "token not ASCII",
            requests.get(f"{secure.url}/info/", headers={"Authorization": "Bearer caf\xe9"}),
            401,
            "token",
        ),
        ("weights, junk", requests.put(f"{secure.url}/model/segmentation", files=junk, headers=admin), 422, "refused"),
        ("weights, none served", requests.put(f"{secure.url}/model/scribbles", files=junk, headers=admin), 404, "no"),
        ("delete unknown image", requests.delete(f"{secure.url}/datastore/image?id=nope", headers=admin), 404, "nope"),
        ("route not served", requests.post(f"{secure.url}/infer/wsi/segmentation", headers=admin), 404, "not served"),
        ("batch, final labels", requests.post(f"{batch}/segmentation", json=final, headers=admin), 422, "original"),
        ("batch, other model", requests.post(f"{batch}/scribbles", headers=admin), 422, "segmentation only"),
    ]
    private = (secure.root, secure.tmpdir, "/tmp/", os.path.dirname(APP))
    for what, response, status, message in cases:
        assert response.status_code == status, (what, response.status_code, response.text)
        assert message in response.text, (what, response.text)
        assert not any(p in response.text for p in private), (what, response.text)

    assert snapshot(secure.studies, secure.model_dir, secure.users.path) == before, "data, weights or users changed"
    assert sorted(os.listdir(secure.tmpdir)) == temporary_before, "temporary files were left behind"
    assert set(os.listdir(os.path.dirname(secure.root))) == outside_before


def route_paths(names: dict[str, str]) -> list[tuple[str, str]]:
    """(method, path) of every route the server serves, path parameters filled from ``names``."""
    paths = []
    for rule in RULES:
        path = rule.pattern.pattern.removeprefix("^").removesuffix("/?$")
        for key, value in names.items():
            path = path.replace(f"(?P<{key}>[^/]+)", value)
        paths += [(method, path.replace("\\", "") or "/") for method in sorted(rule.methods)]
    return paths


@pytest.mark.parametrize("names", ["known", "unknown"])
def test_malformed_requests_to_every_route_get_a_4xx(secure: SecureServer, names: str) -> None:
    """Garbage queries and bodies, as an admin, on every route: never a 500, never a server path."""
    admin = secure.headers("adam")
    parameters = {
        "known": {"model": "segmentation", "strategy": "random", "trainer": "segmentation", "method": "epistemic"},
        "unknown": {"model": "nope", "strategy": "nope", "trainer": "nope", "method": "nope"},
    }[names]
    parameters["session_id"] = "no-such-session"
    queries = [
        "image=case%00&id=..%2F..%2Fx&label=" + "a" * 300 + "&tag=..%2Fx&session_id=%2Fetc",
        "image=nope&id=nope&label=nope&tag=final&session_id=nope&lines=-1&limit_cases=0&expiry=-5",
    ]
    bodies = [
        {"data": "{not json", "headers": {"Content-Type": "application/json"}},
        {"data": "[1, 2]", "headers": {"Content-Type": "application/json"}},
        {"data": {"params": "[oops", "username": "adam"}, "files": {"file": ("x.nii.gz", b"junk")}},
        {"data": {"params": '{"label_info": 5}'}, "files": {"label": ("x.nii.gz", b"junk"), "files": ("y", b"")}},
    ]
    before = snapshot(secure.studies, secure.model_dir)
    private = (secure.root, secure.tmpdir, "/tmp/")
    for method, path in route_paths(parameters):
        if (method, path) in (("POST", "/train"), ("POST", "/train/segmentation"), ("POST", "/scoring")):
            continue  # valid bodies would start a run; their malformed ones are in the test above
        if (method, path) == ("DELETE", "/model/segmentation"):
            continue  # takes no input to get wrong: it would remove the weights (tests/lib/server/test_model_routes.py)
        if (method, path) == ("POST", "/auth/token"):
            continue  # failed logins count towards the address's limit: malformed logins are tested above
        for query in queries:
            for body in bodies:
                headers = {**admin, **body.get("headers", {})}
                kwargs = {k: v for k, v in body.items() if k != "headers"}
                response = requests.request(
                    method, f"{secure.url}{path}?{query}", headers=headers, timeout=60, **kwargs
                )
                assert response.status_code < 500, (method, path, query, body, response.text)
                if path != "/logs":  # the admin's log names the server's files by nature
                    assert not any(p in response.text for p in private), (
                        method,
                        path,
                        [
                            response.text[max(0, response.text.find(p) - 150) : response.text.find(p) + 80]
                            for p in private
                            if p in response.text
                        ],
                    )
    assert snapshot(secure.studies, secure.model_dir) == before


def self_signed(folder: str) -> tuple[str, str]:
    """A key and a self-signed certificate for 127.0.0.1, as ``openssl req -x509`` makes them."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = os.path.join(folder, "key.pem"), os.path.join(folder, "cert.pem")
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    with open(cert_path, "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_https_with_login(secure: SecureServer, tmp_path, monkeypatch) -> None:
    """The README's HTTPS set-up: the module's client logs in, segments and sends a local volume over HTTPS."""
    key, cert = self_signed(str(tmp_path))
    studies = str(tmp_path / "studies")
    case = write_case(studies, "case0", seed=0, label_folder=str(tmp_path / "truth"))
    conf = {**TINY, "model_dir": str(tmp_path / "model"), "users": secure.users.path}
    args = ("--ssl_keyfile", key, "--ssl_certfile", cert)
    process, url = start_server(APP, studies, conf, str(tmp_path / "log"), host="0.0.0.0", args=args)
    try:
        wait_until_up(process, url)
        assert url.startswith("https://")
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{url}/auth/", timeout=30)  # a self-signed certificate is not trusted by default
        client = SlicerLogic(url, str(tmp_path), "anna", PASSWORDS["anna"])
        assert client.info()["datastore"]["total"] == 1  # the module's own calls do not check the certificate
        with pytest.raises(requests.exceptions.SSLError):
            client.create_session(case.image_path)  # but its upload of a local volume does
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)  # how the README has Slicer trust it
        session_id = client.create_session(case.image_path)["session_id"]
        with pytest.raises(client.module.MONAILabelClientException, match="Status: 409.*no trained weights"):
            client.infer("segmentation", "", {}, session_id=session_id)  # reached the model, through the session
    finally:
        stop_server(process)
