"""Atomic files and published versions: a reader or a crash never sees half an output."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from llm_assets.atomic import (
    NoSymlinksError,
    atomic_write,
    hold_version,
    new_version,
    remove_stale_staging,
    remove_stale_temporaries,
    require_symlinks,
    versions_dir,
)


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


READER = """
import sys
from pathlib import Path
from llm_assets.atomic import hold_version
with hold_version(Path(sys.argv[1])) as version:
    print(version, flush=True)
    sys.stdin.readline()  # hold until the test says to let go
    print((version / "a").read_text(), flush=True)
"""


def _publish(target: Path, content: str) -> Path:
    with new_version(target) as folder:
        (folder / "a").write_text(content)
    return target.resolve()


def _reader(target: Path) -> tuple[subprocess.Popen[str], Path]:
    """Another process (a training, a stage) holding the version ``target`` names now."""
    reader = subprocess.Popen([sys.executable, "-c", READER, str(target)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert reader.stdout is not None
    return reader, Path(reader.stdout.readline().strip())


def test_a_reader_keeps_its_version_through_three_publishes_until_it_lets_go(tmp_path: Path) -> None:
    target = tmp_path / "processed_dataset"
    first = _publish(target, "v1")
    reader, held = _reader(target)
    assert held == first
    second = _publish(target, "v2")
    third, fourth = _publish(target, "v3"), _publish(target, "v4")
    assert held.is_dir() and (held / "a").read_text() == "v1"  # two kept, and the held one
    assert not second.exists()  # the one no one held went as usual
    assert (target / "a").read_text() == "v4"

    assert reader.stdin is not None and reader.stdout is not None
    reader.stdin.write("let go\n")
    reader.stdin.flush()
    assert reader.stdout.readline().strip() == "v1"  # read by its path after three publishes
    assert reader.wait(timeout=30) == 0
    _publish(target, "v5")
    assert not held.exists() and not third.exists() and fourth.is_dir()
    holds = [h.name.removeprefix(".hold-") for h in versions_dir(target).glob(".hold-*")]
    assert all((versions_dir(target) / name).exists() for name in holds)  # no hold file outlives its version


def test_a_reader_killed_with_sigkill_holds_nothing(tmp_path: Path) -> None:
    target = tmp_path / "tokenizer"
    _publish(target, "v1")
    reader, held = _reader(target)
    os.kill(reader.pid, signal.SIGKILL)
    reader.wait()
    for content in ("v2", "v3"):
        _publish(target, content)
    assert not held.exists()


def test_holding_a_published_file_holds_its_companions(tmp_path: Path) -> None:
    corpus = tmp_path / "all_books.txt"
    with new_version(corpus, member="all_books.txt") as folder:
        (folder / "all_books.txt").write_text("one")
        (folder / "all_books.index.json").write_text("{}")
    with hold_version(corpus) as text:
        for content in ("two", "three", "four"):
            with new_version(corpus, member="all_books.txt") as folder:
                (folder / "all_books.txt").write_text(content)
        assert text.read_text() == "one" and (text.parent / "all_books.index.json").is_file()
    assert corpus.read_text() == "four"


def test_holding_nothing_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Nothing is published at .*tokenizer"):
        with hold_version(tmp_path / "tokenizer"):
            pass


def test_a_version_written_into_a_staged_one_is_published_once_by_the_outer_block(tmp_path: Path) -> None:
    target = tmp_path / "tokenizer"
    with new_version(target) as staged:
        with new_version(staged) as inner:  # what a stage function does when given the staged folder
            assert inner == staged
            (inner / "a").write_text("checked before publishing")
        assert not target.exists()  # not yet: the outer block checks, records, then publishes
    assert (target / "a").read_text() == "checked before publishing"
    assert len([p for p in versions_dir(target).iterdir() if not p.name.startswith(".")]) == 1


def test_a_folder_where_the_link_belongs_is_kept_as_a_version_even_beside_a_leftover(tmp_path: Path) -> None:
    target = tmp_path / "tokenizer"
    target.mkdir()
    (target / "a").write_text("from before versioning")
    leftover = versions_dir(target) / f"{0:020d}-unversioned"  # what an earlier migration left
    leftover.mkdir(parents=True)
    (leftover / "a").write_text("older still")
    _publish(target, "new")
    assert target.is_symlink() and (target / "a").read_text() == "new"
    kept = [p for p in versions_dir(target).iterdir() if "-unversioned" in p.name]
    assert "from before versioning" in [(p / "a").read_text() for p in kept]


def _no_symlinks_under(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate a file system without symbolic links (FAT, some SMB mounts) below ``root``."""
    real = os.symlink

    def refuse(source: object, link: object, *args: object, **kwargs: object) -> None:
        if str(Path(str(link)).absolute()).startswith(str(root)):
            raise OSError(errno.EPERM, "Operation not permitted", str(link))
        real(source, link, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "symlink", refuse)


def test_without_symlinks_nothing_is_written_and_the_error_says_what_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_symlinks_under(tmp_path, monkeypatch)
    target = tmp_path / "all_books.txt"
    entered = []
    with pytest.raises(NoSymlinksError) as refused:
        with new_version(target, member="all_books.txt"):
            entered.append(True)  # never: refused before any work
    assert not entered and not target.exists()
    message = str(refused.value)
    assert str(tmp_path) in message and "symbolic links" in message and "LLM_ASSETS_DATA_DIR" in message
    with pytest.raises(NoSymlinksError):
        require_symlinks(tmp_path / "data" / "not yet made")
