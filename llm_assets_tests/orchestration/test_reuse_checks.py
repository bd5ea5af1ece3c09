"""Reuse checks that do not read what has not changed, and still catch what has.

Each data stage keeps a digest cache beside its stamp (``data/.stamps/<stage>.digests.json``): a
re-run with nothing changed answers "is the output still the one stamped?" from the files'
identities, without reading them; a file changed behind the stamp is hashed again and rebuilt.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import dagster as dg

from llm_assets.digests import RACY_NS
from llm_assets.orchestration.assets import corpus, raw_books, tokenized_dataset, tokenizer
from llm_assets.orchestration.resources import GutenbergResource, PathsResource
from llm_assets_tests.gutenberg_server import GutenbergMirror, make_books
from llm_assets_tests.orchestration.projects import latest, messages

STAGES = [raw_books, corpus, tokenizer, tokenized_dataset]
CONFIG = {"ops": {"tokenizer": {"config": {"vocab_size": 400}},
                  "tokenized_dataset": {"config": {"context_length": 32}}}}
SUMMARY = re.compile(r"^(\w+): digests: (\d+) file\(s\) known unchanged \(not read\), (\d+) hashed")


def _digest_summaries(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[int, int]]:
    """stage -> (files known unchanged, files hashed), from the stage's log line."""
    found = {}
    for _, message in messages(instance, run_id):
        match = SUMMARY.match(message)
        if match:
            found[match.group(1)] = (int(match.group(2)), int(match.group(3)))
    return found


def _older_than_the_racy_window() -> None:
    """Files written within a second of being hashed are hashed again next time (see digests)."""
    time.sleep(RACY_NS / 1e9 + 0.2)


def test_an_unchanged_rerun_reads_nothing_and_an_edit_in_place_is_still_caught(
    tmp_path: Path, gutenberg_mirror: GutenbergMirror
) -> None:
    for book in make_books([11, 22, 33], paragraphs=80).values():
        gutenberg_mirror.add_book(book.book_id, book.raw)
    data = tmp_path / "data"
    data.mkdir()
    (data / "books.yaml").write_text("books: [11, 22, 33]\n")
    resources = {"paths": PathsResource(data_dir=str(data), checkpoint_dir=str(tmp_path / "ck")),
                 "gutenberg": GutenbergResource(mirror=gutenberg_mirror.url)}
    with dg.instance_for_test() as instance:
        def run(assets: list) -> str:
            names = {a.key.path[-1] for a in assets}
            config = {"ops": {op: c for op, c in CONFIG["ops"].items() if op in names}}
            result = dg.materialize(assets, instance=instance, resources=resources, run_config=config)
            assert result.success
            return result.run_id

        run(STAGES)
        _older_than_the_racy_window()
        run(STAGES)  # hashes what the first run wrote too recently to vouch for, and remembers it
        third = run(STAGES)
        summaries = _digest_summaries(instance, third)
        assert set(summaries) == {"raw_books", "corpus", "tokenizer", "tokenized_dataset"}
        for stage, (known, hashed) in summaries.items():
            assert hashed == 0 and known > 0, f"{stage} read {hashed} file(s) though nothing changed"
        assert all(latest(instance, s.key.path[-1])[0]["reused_previous_output"] for s in STAGES[1:])

        # The corpus edited in place: same size, same inode, a new mtime.
        text = (data / "all_books.txt").resolve()
        before = os.stat(text)
        body = bytearray(text.read_bytes())
        body[10] = ord("Z") if body[10] != ord("Z") else ord("Y")
        with open(text, "r+b") as handle:
            handle.write(body)
        assert (os.stat(text).st_ino, os.stat(text).st_size) == (before.st_ino, before.st_size)
        edited = run([corpus])
        logs = [m for _, m in messages(instance, edited)]
        assert latest(instance, "corpus")[0]["reused_previous_output"] is False
        assert any("not the one the last build wrote" in m for m in logs)
        assert (data / "all_books.txt").read_bytes()[10] != body[10]  # rebuilt from the books

        # A book rewritten behind raw_books' back (same size): hashed again and downloaded again.
        book = data / "raw" / "22.txt"
        raw = bytearray(book.read_bytes())
        raw[-3] = ord("Q") if raw[-3] != ord("Q") else ord("R")
        book.write_bytes(raw)
        again = run([raw_books])
        assert latest(instance, "raw_books")[0]["downloaded"] == 1
        assert _digest_summaries(instance, again)["raw_books"][1] >= 1
