"""Atomic files and published versions: a reader or a crash never sees half an output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from llm_assets.atomic import atomic_write, new_version, remove_stale_staging, remove_stale_temporaries, versions_dir


def test_atomic_write_replaces_whole_files_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.json"
    atomic_write(target, "one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    atomic_write(target, "old")
    with pytest.raises(TypeError):
        atomic_write(target, 42)  # type: ignore[arg-type]
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_a_new_version_is_published_by_one_link_and_the_previous_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "tokenizer"
    for content in ("v1", "v2", "v3"):
        with new_version(target) as folder:
            (folder / "tokenizer.json").write_text(content)
            assert target.is_symlink() is (content != "v1") and folder.name.startswith(".tmp-")
        assert target.is_symlink() and (target / "tokenizer.json").read_text() == content
    kept = sorted(p.name for p in versions_dir(target).iterdir())
    assert len(kept) == 2  # the current one and the one a reader may still hold


def test_a_member_file_is_published_with_its_companions(tmp_path: Path) -> None:
    corpus = tmp_path / "all_books.txt"
    with new_version(corpus, member="all_books.txt") as folder:
        (folder / "all_books.txt").write_text("text")
        (folder / "all_books.index.json").write_text("{}")
    assert corpus.read_text() == "text"
    assert (corpus.resolve().parent / "all_books.index.json").read_text() == "{}"


def test_an_error_inside_leaves_the_published_version_alone(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with new_version(target) as folder:
        (folder / "a").write_text("good")
    with pytest.raises(RuntimeError), new_version(target) as folder:
        (folder / "a").write_text("half")
        raise RuntimeError("the stage failed")
    assert (target / "a").read_text() == "good"
    assert not [p for p in versions_dir(target).iterdir() if p.name.startswith(".tmp-")]


KILLED_WRITER = """
import sys, time
from pathlib import Path
from llm_assets.atomic import new_version
with new_version(Path(sys.argv[1])) as folder:
    (folder / "a").write_text("half")
    print("writing", flush=True)
    time.sleep(600)
"""


def test_a_writer_killed_mid_version_leaves_the_old_output_and_stale_staging_is_cleared(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with new_version(target) as folder:
        (folder / "a").write_text("good")
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert (target / "a").read_text() == "good"
    removed = remove_stale_staging(target)
    assert [p.name.startswith(".tmp-") for p in removed] == [True]
    assert len(list(versions_dir(target).iterdir())) == 1


def test_stale_temporaries_of_killed_writes_are_removed_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "84.txt").write_text("a book")
    (tmp_path / ".84.txt.abc123.tmp").write_text("half a book")  # what a killed atomic_file leaves
    (tmp_path / ".hidden").write_text("not ours")
    removed = remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [".84.txt.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "84.txt"]
