"""Self-describing checkpoints of the learned families: save -> load identity, clear errors, hub."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch
from safetensors.torch import load_file, save_file

import vistok
from vistok.configurable import architecture_spec
from vistok.hub import CheckpointError
from vistok.models.conv2d import Conv2dTokenizer
from vistok.models.latent1d import Latent1dTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

SPECS = [
    "conv2d-tiny",
    "vit2d-tiny",
    "latent1d-tiny",
    "latent1d-tiny:tokens=6,quantizer=[vq:codebook_size=64]",
    "conv2d-tiny:quantizer=gaussian",
]


def _trained_a_little(spec: str) -> vistok.Tokenizer:
    """A model whose weights differ from a fresh init (one optimizer step)."""
    torch.manual_seed(0)
    m = vistok.create(spec).train()
    x = torch.rand(4, 3, m.image_size, m.image_size)
    out = m(x)
    ((out.reconstruction - x).square().mean() + out.loss).backward()
    torch.optim.SGD(m.parameters(), lr=0.1).step()
    return m.eval()


@pytest.mark.parametrize("spec", SPECS)
def test_save_load_gives_identical_reconstructions(spec, tmp_path):
    m = _trained_a_little(spec)
    m.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["name"] == m.registry_name
    torch.manual_seed(1)  # a different init: everything must come from the file
    back = vistok.load(tmp_path)
    assert (
        type(back) is type(m)
        and back.config == m.config
        and back.init_config == m.init_config
        and vistok.create(architecture_spec(back)).init_config == m.init_config
    )
    assert (
        back.spec == str(tmp_path) and vistok.create(back.spec).config == m.config
    )  # the folder rebuilds it
    x = torch.rand(2, 3, m.image_size, m.image_size)
    tok, tok2 = m.encode(x), back.encode(x)
    for a, b in ((tok.ids, tok2.ids), (tok.latents, tok2.latents), (tok.lengths, tok2.lengths)):
        assert (a is None and b is None) or torch.equal(a, b)
    assert torch.equal(m.decode(tok), back.decode(tok2))


def _edit_weights(path, fn):
    state = load_file(str(path / "model.safetensors"))
    fn(state)
    save_file(state, str(path / "model.safetensors"))


def test_missing_tensor_is_a_clear_error(tmp_path):
    vistok.create("latent1d-tiny").save_pretrained(tmp_path)
    _edit_weights(tmp_path, lambda s: s.pop("null_token"))
    with pytest.raises(CheckpointError, match=r"missing \['null_token'\]"):
        vistok.load(tmp_path)


def test_unexpected_tensor_is_a_clear_error(tmp_path):
    vistok.create("vit2d-tiny").save_pretrained(tmp_path)
    _edit_weights(tmp_path, lambda s: s.__setitem__("extra.weight", torch.zeros(2)))
    with pytest.raises(CheckpointError, match=r"unexpected \['extra.weight'\]"):
        vistok.load(tmp_path)


def test_shape_mismatch_is_a_clear_error(tmp_path):
    vistok.create("latent1d-tiny").save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["config"]["tokens"] = 5
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"tensor '\w+' has shape \(8, 64\), model expects \(5, 64\)"):
        vistok.load(tmp_path)


def test_unknown_family_is_a_clear_error(tmp_path):
    vistok.create("conv2d-tiny").save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["name"] = "conv2d-tinny"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        CheckpointError, match=r"unknown tokenizer 'conv2d-tinny'\. Did you mean 'conv2d-tiny'"
    ):
        vistok.load(tmp_path)


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """A stand-in ``huggingface_hub`` whose ``snapshot_download`` serves local folders."""
    calls: list[dict] = []
    folders: dict[str, str] = {}

    def snapshot_download(repo_id, revision=None, allow_patterns=None, **kw):
        calls.append({"repo_id": repo_id, "revision": revision, "allow_patterns": allow_patterns})
        if repo_id not in folders:
            raise OSError(f"404 {repo_id}")
        return folders[repo_id]

    mod = types.ModuleType("huggingface_hub")
    mod.snapshot_download = snapshot_download  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "huggingface_hub", mod)
    return folders, calls


def test_load_from_hub_name_offline(fake_hub, tmp_path):
    folders, calls = fake_hub
    m = _trained_a_little("latent1d-tiny")
    folders["org/latent1d-tiny"] = str(m.save_pretrained(tmp_path / "snap"))
    back = vistok.load("org/latent1d-tiny", revision="v1")
    assert calls[-1] == {
        "repo_id": "org/latent1d-tiny",
        "revision": "v1",
        "allow_patterns": ["config.json", "model.safetensors"],
    }
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(back.reconstruct(x), m.reconstruct(x))
    again = Latent1dTokenizer.from_pretrained("org/latent1d-tiny")
    assert isinstance(again, Latent1dTokenizer)
    with pytest.raises(TypeError, match="not a Conv2dTokenizer"):
        Conv2dTokenizer.from_pretrained("org/latent1d-tiny")
    with pytest.raises(CheckpointError, match="could not fetch"):
        vistok.load("org/missing")
