from __future__ import annotations

import pytest

from lib.server.options import OptionsError, check_infer_options, check_train_options, parse_json_object

LABELS = ("tumor", "edema")
MODEL_CONFIG = {"device": ["cpu"], "keep_largest": ["auto", "on", "off"], "result_extension": [".nrrd", ".nii.gz"]}
TRAINER_CONFIG = {"max_epochs": 50, "device": ["cpu"], "dataset": ["CacheDataset"], "tracking_uri": "sqlite:///m.db"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1", "not valid JSON"),
        ("[1, 2]", "JSON object, not list"),
        ('"x"', "not str"),
        # Python reads these, but a reply or datastore file holding one can no longer be sent as JSON.
        ('{"a": NaN}', "NaN is not a number JSON accepts"),
        ('{"a": [-Infinity]}', "-Infinity is not a number JSON accepts"),
        ('{"a": {"b": 1e99999}}', "1e99999 is out of the range of a number"),
    ],
)
def test_params_must_be_a_json_object(text: str, message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        parse_json_object(text, "params")
    assert parse_json_object("", "params") == {} and parse_json_object('{"a": 1}', "params") == {"a": 1}


def test_accepts_what_slicer_sends() -> None:
    check_infer_options({"result_extension": ".nrrd", "result_dtype": "uint8", "client_id": "x"}, MODEL_CONFIG, LABELS)
    check_infer_options({"tumor": [[1, 2, 3]], "edema": [], "background": [[0, 0, 0]], "label": "tumor"}, {}, LABELS)
    label_info = [{"name": "tumor", "id": 1}, {"name": "background_scribbles", "idx": 2}]
    check_infer_options({"label_info": label_info, "roi": [], "selected_label_name": "tumor"}, {}, LABELS)
    check_infer_options({"keep_largest": "off", "device": "cpu"}, MODEL_CONFIG, LABELS)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image": "/etc/passwd"}, "not accepted"),
        ({"session": {"image": "/x"}}, "not accepted"),
        ({"label": "/tmp/scribbles.nii.gz"}, "not a label of this app"),
        ({"device": "cuda:7"}, "device 'cuda:7' is not accepted"),
        ({"result_extension": "/../../x.nii.gz"}, "result_extension"),
        ({"label_tag": "../../x"}, "label_tag"),
        ({"foreground": [[1, 2]]}, "foreground must be a list"),
        ({"tumor": [["a", 1, 2]]}, "tumor must be a list"),
        ({"background": "1,2,3"}, "background must be a list"),
        ({"roi": [0, 1, 2]}, "roi must be"),
        ({"label_info": [{"name": 3, "id": 1}]}, "segment name 3 is not text"),
        ({"label_info": {"name": "tumor"}}, "label_info must be"),
        ({"save_label": "yes"}, "save_label must be true or false"),
        ({"slice": 1.5}, "slice must be an integer"),
        ({"client_id": ["x"]}, "client_id must be text of at most 128 characters"),
        ({"foreground": [[1, 2, 3]] * 40, "background": [[4, 5, 6]] * 25}, "65 clicks in one request; at most 64"),
        ({"label_info": [{"name": "tumor", "id": "x", "idx": 2}]}, "'tumor' has value 'x'"),  # id read first: a 500
        ({"label_info": [{"name": "tumor", "id": None}]}, "'tumor' has value None; a whole number is needed"),
        ({"label_info": [{"name": "tumor", "id": 1, "idx": 2}]}, "'tumor' has idx 2 and id 1; send one value"),
        ({"label_info": [{"name": "tumor"}]}, "'tumor' has no value"),
        ({"label_info": [{"name": "tumor", "id": 300}]}, "'tumor' has value 300; values 1..255"),
        ({"label_info": [{"name": "foreground_scribbles", "id": 0}]}, "has value 0; values 1..255"),  # all unmarked
        (
            {"label_info": [{"name": "background_scribbles", "id": 2}, {"name": "foreground_scribbles", "id": 2}]},
            "value 2 is given to both 'background_scribbles' and 'foreground_scribbles'",
        ),
        ({"save_label": True, "label_tag": "final"}, "label_tag final is not accepted"),  # an expert's label
        ({"client_id": "x" * 129}, "client_id must be text"),
    ],
)
def test_refuses_paths_devices_and_malformed_values(options: dict, message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        check_infer_options(options, MODEL_CONFIG, LABELS)


def test_training_accepts_its_own_config_back() -> None:
    check_train_options(
        {"max_epochs": "3", "device": "cpu", "dataset": "CacheDataset", "val_split": 0.2}, TRAINER_CONFIG
    )
    check_train_options({"multi_gpu": False}, TRAINER_CONFIG)  # an annotator may turn it off (or on) for a run
    check_train_options({"multi_gpu": ["true"]}, TRAINER_CONFIG)
    check_train_options({"tracking": ["mlflow"]}, TRAINER_CONFIG)  # as the run reads it: the first item
    check_train_options({"max_epochs": 3.0, "client_id": "user-slicer-1"}, TRAINER_CONFIG)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bundle_path": "/tmp/evil"}, "'bundle_path' is not accepted"),
        ({"device": "cuda:3"}, "device is fixed"),
        ({"tracking_uri": "sqlite:////tmp/elsewhere.db"}, "tracking_uri is fixed"),
        ({"max_epochs": 0}, "max_epochs=0"),
        ({"max_epochs": "many"}, "max_epochs='many'"),
        ({"max_epochs": True}, "max_epochs=True"),
        ({"val_split": 1.0}, "val_split"),
        ({"finetune_learning_rate": 2}, "finetune_learning_rate"),
        ({"tracking": "wandb"}, "tracking='wandb' is not accepted: 'None' or 'mlflow'"),
        ({"tracking": ["wandb"]}, "tracking='wandb' is not accepted"),
        ({"multi_gpu": "maybe"}, "multi_gpu='maybe' is not true or false"),
        ({"max_epochs": 1.9}, "max_epochs=1.9"),  # not silently 1
        # It goes on the training process's command line, where 200,000 characters would stop the run starting.
        ({"client_id": "a" * 200_000}, "client_id must be text of at most 128 characters"),
        ({"client_id": [[[]]]}, "client_id must be text"),
    ],
)
def test_training_refuses_paths_devices_and_bad_values(options: dict, message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        check_train_options(options, TRAINER_CONFIG)


def test_deeply_nested_json_is_refused() -> None:
    with pytest.raises(OptionsError, match="nested too deeply"):
        parse_json_object("[" * 100_000, "params")
