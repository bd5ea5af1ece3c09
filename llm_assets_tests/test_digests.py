"""Content digests: streamed, for folders independent of where the folder lives, and read again
only when a file's identity (device, inode, size, mtime, ctime) changed."""

import hashlib
import json
import os
import shutil
import time

import pytest

from llm_assets.digests import DigestCache, digest_file, digest_tree


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


# --- the digest cache: files hashed again only when their identity changed ---------------------

SETTLE_NS = 50_000_000  # a 50 ms "racy" window, so the tests need not wait the default second


def _settled(path, data: bytes) -> None:
    """Write ``data``, then wait until the file is older than the cache's racy window."""
    path.write_bytes(data)
    time.sleep(2 * SETTLE_NS / 1e9)


def _cache(tmp_path) -> DigestCache:
    """A cache loaded from disk, as the next run of a stage finds it."""
    return DigestCache(tmp_path / "stage.digests.json", racy_ns=SETTLE_NS)


def test_an_untouched_file_is_not_read_again(tmp_path):
    f = tmp_path / "corpus.txt"
    data = b"a thousand books " * 100_000
    _settled(f, data)
    first = _cache(tmp_path)
    assert first.digest_file(f) == hashlib.sha256(data).hexdigest()
    assert (first.bytes_read, first.files_read) == (len(data), 1)
    first.save()
    again = _cache(tmp_path)
    assert again.digest_file(f) == hashlib.sha256(data).hexdigest()
    assert (again.bytes_read, again.files_read, again.files_known) == (0, 0, 1)


def test_a_same_size_rewrite_with_a_new_mtime_is_hashed_again(tmp_path):
    f = tmp_path / "tokenizer.json"
    _settled(f, b"version one")
    first = _cache(tmp_path)
    first.digest_file(f)
    first.save()
    _settled(f, b"version two")  # same size, written in place: same inode
    again = _cache(tmp_path)
    assert again.digest_file(f) == hashlib.sha256(b"version two").hexdigest()
    assert again.bytes_read == len(b"version two")


def test_a_rewrite_that_sets_the_mtime_back_is_still_hashed_again(tmp_path):
    """Size, inode and mtime as recorded: the change time, which no one can set, tells."""
    f = tmp_path / "data.arrow"
    _settled(f, b"blocks: 1 2 3")
    first = _cache(tmp_path)
    first.digest_file(f)
    first.save()
    before = os.stat(f)
    _settled(f, b"blocks: 3 2 1")
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))
    time.sleep(2 * SETTLE_NS / 1e9)
    assert (os.stat(f).st_ino, os.stat(f).st_size, os.stat(f).st_mtime_ns) == (
        before.st_ino, before.st_size, before.st_mtime_ns)
    again = _cache(tmp_path)
    assert again.digest_file(f) == hashlib.sha256(b"blocks: 3 2 1").hexdigest()
    assert again.files_read == 1


def test_a_replaced_file_is_hashed_again(tmp_path):
    f = tmp_path / "all_books.txt"
    _settled(f, b"the old corpus")
    first = _cache(tmp_path)
    first.digest_file(f)
    first.save()
    before = os.stat(f)
    other = tmp_path / "other.txt"
    _settled(other, b"the new corpus")
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size and mtime, another inode
    os.replace(other, f)
    time.sleep(2 * SETTLE_NS / 1e9)
    again = _cache(tmp_path)
    assert again.digest_file(f) == hashlib.sha256(b"the new corpus").hexdigest()
    assert again.files_read == 1


def test_a_file_written_just_before_it_was_hashed_is_not_remembered(tmp_path):
    """Another write within the same timestamp tick would keep its identity: hash it again next time."""
    f = tmp_path / "fresh.txt"
    f.write_bytes(b"just written")
    cache = DigestCache(tmp_path / "stage.digests.json")  # the default window: one second
    cache.digest_file(f)
    cache.save()
    again = DigestCache(tmp_path / "stage.digests.json")
    again.digest_file(f)
    assert again.files_read == 1


def test_tree_digests_are_the_same_with_or_without_the_cache_and_follow_changes(tmp_path):
    tree = tmp_path / "dataset"
    (tree / "train").mkdir(parents=True)
    _settled(tree / "train" / "data-00000-of-00001.arrow", b"train blocks")
    _settled(tree / "state.json", b"{}")
    first = _cache(tmp_path)
    assert first.digest_tree(tree, "*.arrow") == digest_tree(tree, "*.arrow")
    first.save()
    again = _cache(tmp_path)
    assert again.digest_tree(tree, "*.arrow") == digest_tree(tree, "*.arrow") and again.files_read == 0
    _settled(tree / "train" / "data-00000-of-00001.arrow", b"train BLOCKS")
    changed = _cache(tmp_path)
    assert changed.digest_tree(tree, "*.arrow") == digest_tree(tree, "*.arrow") and changed.files_read == 1


def test_the_cache_keeps_only_what_the_last_run_asked_for_and_survives_damage(tmp_path):
    old, new = tmp_path / "v1.txt", tmp_path / "v2.txt"
    _settled(old, b"first version")
    _settled(new, b"second version")
    first = _cache(tmp_path)
    first.digest_file(old)
    first.save()
    second = _cache(tmp_path)
    second.digest_file(new)
    second.save()
    assert len(json.loads((tmp_path / "stage.digests.json").read_text())["digests"]) == 1
    (tmp_path / "stage.digests.json").write_text("{damaged")
    damaged = _cache(tmp_path)
    assert damaged.digest_file(new) == hashlib.sha256(b"second version").hexdigest() and damaged.files_read == 1
