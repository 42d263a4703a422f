"""ctrbench.data.download: unpacking an archive never writes outside its folder."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from ctrbench.data.download import unpack_zip
from ctrbench.errors import DataError


def make_zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, text in members.items():
            z.writestr(name, text)
    return path


@pytest.mark.parametrize("escaping", ["../ml-x/ratings.csv", "../mlx.csv", "sub/../../ml-evil/a.csv"])
def test_member_escaping_to_a_sibling_with_a_shared_prefix_is_refused(tmp_path, escaping):
    """raw/ml-x/... starts with the string raw/ml but is not inside raw/ml: the archive is refused
    before anything is written, and the error names the archive and the member."""
    into = tmp_path / "raw" / "ml"
    into.mkdir(parents=True)
    archive = make_zip(tmp_path / "x.zip", {"ml-1/ok.csv": "a\n", escaping: "evil\n"})
    with pytest.raises(DataError) as e:
        unpack_zip(archive, into)
    msg = str(e.value)
    assert "\n" not in msg and str(archive) in msg and escaping in msg and str(into) in msg
    siblings = sorted(p.name for p in (tmp_path / "raw").iterdir())
    assert siblings == ["ml"], siblings  # nothing written beside the folder
    assert not any(into.rglob("*.csv"))  # nor inside it: the check comes before any member


def test_absolute_member_is_refused(tmp_path):
    into = tmp_path / "raw" / "ml"
    into.mkdir(parents=True)
    archive = make_zip(tmp_path / "x.zip", {str(tmp_path / "abs.csv"): "evil\n"})
    with pytest.raises(DataError, match="would unpack outside"):
        unpack_zip(archive, into)
    assert not (tmp_path / "abs.csv").exists()


def test_members_inside_the_folder_are_unpacked(tmp_path):
    into = tmp_path / "raw" / "ml"
    into.mkdir(parents=True)
    archive = make_zip(tmp_path / "x.zip", {"ml-1/ratings.csv": "a\n", "ml-1/sub/../movies.csv": "b\n", "top.csv": "c\n"})
    unpack_zip(archive, into)
    assert (into / "ml-1" / "ratings.csv").read_text() == "a\n"
    assert (into / "ml-1" / "movies.csv").read_text() == "b\n"
    assert (into / "top.csv").read_text() == "c\n"
