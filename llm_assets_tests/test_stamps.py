"""Stamps: reuse only when the key matches and the output on disk is the one stamped."""

from llm_assets import stamps
from llm_assets.digests import digest_file


def test_reused_only_for_the_same_key_and_the_same_output(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("result")
    stamp = tmp_path / "stamps" / "stage.json"
    key = stamps.stamp_key(upstream="abc", config={"vocab_size": 10}, code="1")

    def digest() -> str:
        return digest_file(out)

    first = stamps.check_stamp(stamp, key, digest)
    assert first.report is None and first.reason == "no record of an earlier build"
    stamps.save_stamp(stamp, key, digest(), {"tokens": 5})
    reuse = stamps.check_stamp(stamp, key, digest)
    assert reuse.report == {"tokens": 5} and reuse.output_digest == digest()

    other = stamps.stamp_key(upstream="abc", config={"vocab_size": 11}, code="1")
    assert "changed" in stamps.check_stamp(stamp, other, digest).reason
    out.write_text("rebuilt from a notebook")  # replaced behind the stamp
    replaced = stamps.check_stamp(stamp, key, digest)
    assert replaced.report is None and "not the one the last build wrote" in replaced.reason
    out.unlink()
    assert "missing" in stamps.check_stamp(stamp, key, digest).reason


def test_corrupt_stamp_means_rebuild(tmp_path):
    stamp = tmp_path / "s.json"
    stamp.write_text("{not json")
    assert stamps.check_stamp(stamp, "k", lambda: "d").report is None


def test_key_ignores_argument_order():
    assert stamps.stamp_key(a=1, b=2) == stamps.stamp_key(b=2, a=1)
    assert stamps.stamp_key(a=1, b=2) != stamps.stamp_key(a=1, b=3)
