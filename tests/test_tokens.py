from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vistok.tokens import Tokens


def test_save_load_round_trip_ids_and_payloads(tmp_path: Path) -> None:
    t = Tokens(
        bits=[120.0, 96.0],
        ids=torch.randint(0, 4096, (2, 32)),
        lengths=torch.tensor([32, 8]),
        meta={"payloads": [b"\x00\x01abc", b""], "size": [4, 5]},
    )
    t.save(tmp_path / "a.vtok", tokenizer="jpeg:quality=3")
    back, spec = Tokens.load(tmp_path / "a.vtok")
    assert spec == "jpeg:quality=3"
    assert torch.equal(back.ids, t.ids) and torch.equal(back.lengths, t.lengths)
    assert back.meta == t.meta and torch.equal(back.bits, t.bits)
    assert not list(tmp_path.glob("*.tmp"))  # nothing half-written left behind


def test_subbatch_and_rate() -> None:
    t = Tokens(bits=[8.0, 16.0], latents=torch.zeros(2, 4, 3), meta={"payloads": [b"a", b"bb"]})
    one = t[1]
    assert one.batch_size == 1 and one.meta["payloads"] == [b"bb"]
    assert t.bits_per_pixel(2, 4).tolist() == [1.0, 2.0]


def test_load_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.vtok"
    bad.write_bytes(b"hello")
    with pytest.raises(ValueError, match=r"x\.vtok: not a vistok tokens file"):
        Tokens.load(bad)


def test_needs_some_content() -> None:
    with pytest.raises(ValueError, match="need ids, latents or codec payloads"):
        Tokens(bits=[1.0])


def test_written_files_get_umask_permissions(tmp_path: Path) -> None:
    import os
    import stat

    from vistok.utils.io import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_codec_tokens_of_a_pair_split_and_decode_one_by_one() -> None:
    """A batch of two: ``size = [H, W]`` is as long as the batch but describes all of it."""
    import vistok

    codec = vistok.create("webp:quality=60")
    x = torch.rand(2, 3, 24, 40)
    t = codec.encode(x)
    for i in range(2):
        one = t[i]
        assert one.meta["size"] == [24, 40] and len(one.meta["payloads"]) == 1
        torch.testing.assert_close(codec.decode(one), codec.decode(t)[i : i + 1])
