import hashlib

from llm_assets import stamps


def test_stamp_is_reused_only_for_the_same_key_with_outputs_present(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("result")
    stamp = tmp_path / "stamps" / "stage.json"
    key = stamps.stamp_key(upstream="abc", config={"vocab_size": 10}, code="1")

    assert stamps.load_stamp(stamp, key, [out]) is None  # nothing stamped yet
    stamps.save_stamp(stamp, key, {"tokens": 5})
    assert stamps.load_stamp(stamp, key, [out]) == {"tokens": 5}

    other = stamps.stamp_key(upstream="abc", config={"vocab_size": 11}, code="1")
    assert stamps.load_stamp(stamp, other, [out]) is None  # config changed
    out.unlink()
    assert stamps.load_stamp(stamp, key, [out]) is None  # output gone


def test_corrupt_stamp_means_recompute(tmp_path):
    stamp = tmp_path / "s.json"
    stamp.write_text("{not json")
    assert stamps.load_stamp(stamp, "k", []) is None


def test_digest_file_matches_hashlib(tmp_path):
    data = b"x" * (5 * 2**20 + 3)  # spans several read chunks
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    assert stamps.digest_file(f) == hashlib.sha256(data).hexdigest()


def test_key_ignores_argument_order():
    assert stamps.stamp_key(a=1, b=2) == stamps.stamp_key(b=2, a=1)
    assert stamps.stamp_key(a=1, b=2) != stamps.stamp_key(a=1, b=3)
