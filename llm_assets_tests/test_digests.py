"""Content digests: streamed, and for folders independent of where the folder lives."""

import hashlib
import shutil

import pytest

from llm_assets.digests import digest_file, digest_tree


def test_digest_file_matches_hashlib(tmp_path):
    data = b"x" * (5 * 2**20 + 3)  # spans several read chunks
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    assert digest_file(f) == hashlib.sha256(data).hexdigest()


def test_a_tree_digest_follows_names_and_bytes_not_location(tmp_path):
    a = tmp_path / "a"
    (a / "sub").mkdir(parents=True)
    (a / "sub" / "x.arrow").write_bytes(b"1")
    (a / "y.arrow").write_bytes(b"2")
    (a / "state.json").write_text("{}")
    shutil.copytree(a, tmp_path / "b")
    assert digest_tree(a, "*.arrow") == digest_tree(tmp_path / "b", "*.arrow")
    (tmp_path / "b" / "state.json").write_text('{"other": 1}')  # not selected
    assert digest_tree(a, "*.arrow") == digest_tree(tmp_path / "b", "*.arrow")
    (tmp_path / "b" / "y.arrow").write_bytes(b"3")
    assert digest_tree(a, "*.arrow") != digest_tree(tmp_path / "b", "*.arrow")
    (tmp_path / "link").symlink_to(a)
    assert digest_tree(tmp_path / "link") == digest_tree(a)  # through a published link
    with pytest.raises(FileNotFoundError):
        digest_tree(a, "*.bin")
