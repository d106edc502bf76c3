from __future__ import annotations

import pytest

from lib.datastore.names import InvalidNameError, check_name, check_tag


@pytest.mark.parametrize("name", ["case0", "STS_004 CT", "brain-1.v2", "é", "1.2.840.113619.2.55.3", "腫瘍", "nii"])
def test_plain_names_pass(name: str) -> None:
    assert check_name(name, "image id") == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../x", "plain name"),
        ("a/b", "plain name"),
        ("a\\b", "plain name"),
        (".hidden", "plain name"),
        ("a\x00b", "plain name"),
        ("a\nb", "plain name"),
        (" padded", "plain name"),
        ("x" * 300, "300 characters long"),
        ("", "empty"),
        ("a\u0085b", "invisible or control"),  # C1 control (next line)
        ("scan\u202egpj", "invisible or control"),  # right-to-left override
        ("a\u200bb", "invisible or control"),  # zero-width space
        ("a\u2028b", "invisible or control"),  # line separator
        ("\ufffd\ufffd", "not valid UTF-8"),
        ("STS_002.nii.gz", "file type '.nii.gz'"),
        ("STS_002.NII", "file type '.nii'"),
        ("case.hdr", "file type '.hdr'"),
        ("case.nrrd", "file type '.nrrd'"),
    ],
)
def test_other_names_are_refused(name: str, message: str) -> None:
    with pytest.raises(InvalidNameError, match=message):
        check_name(name, "image id")


def test_tags_come_from_the_documented_set() -> None:
    assert check_tag("final") == "final" and check_tag("original") == "original"
    for tag in ("../../somewhere", "Final", "", "mine"):
        with pytest.raises(InvalidNameError, match="accepted tags: final, original"):
            check_tag(tag)
