"""TAESD: Ollin Boer Bohan's tiny distilled autoencoders for the latent spaces of diffusion VAEs.

Each release is an encoder/decoder pair of plain 3x3 conv + ReLU residual blocks, distilled
to reproduce (and decode) the latents of one large VAE:

==========  ==================================  ========  =======  ==================================
name        latent space of                     channels  stride   architecture
==========  ==================================  ========  =======  ==================================
taesd       Stable Diffusion 1.x / 2.x VAE      4         8        f8
taesdxl     SDXL VAE                            4         8        f8
taesd3      SD3 VAE                             16        8        f8
taef1       FLUX.1 VAE (also HiDream, Z-Image)  16        8        f8
taef2       FLUX.2 VAE                          32        8        f8 + global-norm mid blocks
taesana     Sana DC-AE f32c32                   32        32       f32 (wider decoder)
==========  ==================================  ========  =======  ==================================

"f8 + global-norm mid blocks" (the official ``arch_variant="flux_2"``): the three blocks at
the lowest resolution of the encoder and decoder first add a 1x1 -> GroupNorm(4) -> ReLU ->
1x1 branch (``pool``) to their input. "f32" (``arch_variant="f32"``): the encoder starts
with two stride-2 convolutions and has three more downsamplings (32x); the decoder has five
upsamplings at widths ``4c, 2c, c, c, c, c`` (256, 128, 64, ... for ``c = 64``).

Official source: https://github.com/madebyollin/taesd (``taesd.py``, MIT); the
``taef2_*``/``taesana_*`` weights are released only in that git repository. diffusers'
``AutoencoderTiny`` re-hosts taesd, taesdxl, taesd3 and taef1 on the Hugging Face Hub
(``madebyollin/NAME``, ``diffusion_pytorch_model.safetensors`` + ``config.json``).

Checkpoint layouts read (``weights=PATH``):

* the official pair: a folder holding ``{release}_encoder.pth`` and ``{release}_decoder.pth``
  (bare ``nn.Sequential`` state dicts, keys ``0.weight``, ``1.conv.0.weight``, ...;
  ``.safetensors`` twins are accepted too). ``release`` defaults to the registered name, so
  ``taef2:weights=DIR`` finds ``DIR/taef2_encoder.pth`` even in a folder holding every
  release;
* the diffusers layout: ``diffusion_pytorch_model.safetensors`` (or its folder, whose
  ``config.json`` is checked), keys ``encoder.layers.{i}.*`` / ``decoder.layers.{i}.*``.
  Key map: ``encoder.layers.{i}`` -> ``encoder.{i}``; ``decoder.layers.{i}`` ->
  ``decoder.{i+1}`` (the official decoder's index 0 is the parameter-free latent clamp,
  which diffusers applies in ``forward``).

Ranges: the official encoder reads images in ``[0, 1]`` directly and the decoder returns
``[0, 1]`` (unclamped); diffusers wraps the same networks with ``[-1, 1]`` in and out. vistok
feeds ``[0, 1]`` as the official code does, so no conversion runs. The latents are the
encoder's raw output (about ``[-3, 3]``, on the scale of the target VAE's *scaled* latents:
TAESD's scale factor is 1, no shift); the official ``scale_latents`` (to ``[0, 1]`` for 8-bit
PNGs) is not applied. The encoder is deterministic (no posterior), so there is no
``sample`` option.

Tokens: ``latents`` float16 ``[B, C, H/s, W/s]``, 16 bits per value. Any ``H, W`` that are
multiples of the stride ``s`` work.

Speed: the same convolutions as the official code, with in-place ReLUs and residual sums,
run in ``channels_last`` memory format (faster oneDNN convolutions on CPU; results agree
with the official code to float rounding).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from vistok.models.zoo._base import PublishedTokenizer
from vistok.registry import TOKENIZERS
from vistok.tokens import Tokens
from vistok.utils.checkpoints import CheckpointError, read_json, read_state_dict

__all__ = ["TAESD", "TinyBlock", "tiny_decoder", "tiny_encoder"]

_LATENT_MAGNITUDE = 3.0  # the decoder squashes latents with tanh(z / 3) * 3


def _conv3(cin: int, cout: int, *, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)


class LatentClamp(nn.Module):
    """Soft clamp of the latents to ``(-3, 3)``: ``tanh(z / 3) * 3`` (no parameters)."""

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(z / _LATENT_MAGNITUDE) * _LATENT_MAGNITUDE


class TinyBlock(nn.Module):
    """``relu(conv3(relu(conv3(relu(conv3(x))))) + x)``, ``[B, C, h, w] -> [B, C, h, w]``.

    With ``global_norm`` (the FLUX.2 mid blocks) the input first becomes
    ``x + pool(x)``, ``pool`` = 1x1 conv to ``4C`` -> GroupNorm(4) -> ReLU -> 1x1 conv back.
    Attribute names (``conv``, ``pool``) follow the official state-dict keys.
    """

    def __init__(self, channels: int, *, global_norm: bool = False):
        super().__init__()
        c = channels
        self.conv = nn.Sequential(
            _conv3(c, c), nn.ReLU(inplace=True), _conv3(c, c), nn.ReLU(inplace=True), _conv3(c, c)
        )
        self.pool: nn.Sequential | None = None
        if global_norm:
            self.pool = nn.Sequential(
                nn.Conv2d(c, 4 * c, 1, bias=False),
                nn.GroupNorm(4, 4 * c),
                nn.ReLU(inplace=True),
                nn.Conv2d(4 * c, c, 1, bias=False),
            )

    def forward(self, x: Tensor) -> Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        h = self.conv(x)
        if torch.is_grad_enabled() and h.requires_grad:
            return torch.relu(h + x)
        return h.add_(x).relu_()


def tiny_encoder(
    latent_channels: int, *, channels: int = 64, downsample: int = 8, global_norm: bool = False
) -> nn.Sequential:
    """Images ``[B, 3, H, W]`` in ``[0, 1]`` -> latents ``[B, latent_channels, H/s, W/s]``.

    ``downsample`` 8: conv, block, then three times (stride-2 conv, three blocks), conv out.
    ``downsample`` 32: the stem is two stride-2 convs (``channels // 2``, then ``channels``)
    with ReLUs before the first block. ``global_norm`` adds the ``pool`` branch to the three
    blocks of the lowest level. Module indices are the official ``nn.Sequential``'s.
    """
    c = channels
    layers: list[nn.Module]
    if downsample == 8:
        layers = [_conv3(3, c), TinyBlock(c)]
    elif downsample == 32:
        layers = [
            _conv3(3, c // 2, stride=2),
            nn.ReLU(inplace=True),
            _conv3(c // 2, c, stride=2),
            nn.ReLU(inplace=True),
            TinyBlock(c),
        ]
    else:
        raise ValueError(f"TAESD downsample must be 8 or 32, got {downsample}")
    for level in range(3):
        layers.append(_conv3(c, c, stride=2, bias=False))
        layers += [TinyBlock(c, global_norm=global_norm and level == 2) for _ in range(3)]
    layers.append(_conv3(c, latent_channels))
    return nn.Sequential(*layers)


def decoder_widths(channels: int, upsample: int) -> list[int]:
    """Block widths of the decoder levels: ``[c] * 4`` (8x), ``[4c, 2c, c, c, c, c]`` (32x)."""
    if upsample == 8:
        return [channels] * 4
    if upsample == 32:
        return [4 * channels, 2 * channels] + [channels] * 4
    raise ValueError(f"TAESD downsample must be 8 or 32, got {upsample}")


def tiny_decoder(
    latent_channels: int, *, channels: int = 64, upsample: int = 8, global_norm: bool = False
) -> nn.Sequential:
    """Latents ``[B, latent_channels, h, w]`` -> images ``[B, 3, h s, w s]`` (about ``[0, 1]``, unclamped).

    Latent clamp, conv + ReLU, then per level three blocks, nearest 2x upsampling and a
    bias-free conv to the next width; a last block and conv to RGB. ``global_norm`` adds
    the ``pool`` branch to the three blocks of the first (lowest-resolution) level.
    """
    widths = decoder_widths(channels, upsample)
    layers: list[nn.Module] = [LatentClamp(), _conv3(latent_channels, widths[0]), nn.ReLU(inplace=True)]
    for level, (w, w_next) in enumerate(itertools.pairwise(widths)):
        layers += [TinyBlock(w, global_norm=global_norm and level == 0) for _ in range(3)]
        layers += [nn.Upsample(scale_factor=2), _conv3(w, w_next, bias=False)]
    layers += [TinyBlock(widths[-1]), _conv3(widths[-1], 3)]
    return nn.Sequential(*layers)


_DIFFUSERS_KEY = re.compile(r"^(encoder|decoder)\.layers\.(\d+)\.(.+)$")


@TOKENIZERS.register(
    "taesd",
    doc="TAESD tiny autoencoder (madebyollin/taesd): SD1/2 latents, 4 x H/8 x W/8; the family's base",
)
class TAESD(PublishedTokenizer):
    """TAESD encoder/decoder pair: images ``[B, 3, H, W]`` in ``[0, 1]`` <-> float16 latents.

    Args:
        latent_channels: channels of the latent space (4 SD/SDXL, 16 SD3/FLUX.1, 32 FLUX.2/Sana).
        channels: block width (64 in every release; smaller only for tests).
        downsample: spatial factor, 8 or 32 (Sana's DC-AE).
        midblock_gn: the FLUX.2 variant's global-norm branch in the lowest-level blocks.
        image_size: native size; sets ``max_tokens = (image_size / downsample)^2``.
        release: file stem of the official pair in a ``weights=`` folder
            (``{release}_encoder.pth`` + ``{release}_decoder.pth``).
        weights: the release as published (the pair's folder, or a diffusers
            ``AutoencoderTiny`` file/folder).
        pretrained: fetch ``hub`` (the diffusers copy; taef2/taesana have none).
        hub: where the release lives on the Hugging Face Hub.
    """

    kind = "continuous"
    variable_length = False
    source_keys: ClassVar[tuple[str, ...]] = ("weights", "pretrained", "release")
    formats: ClassVar[str] = (
        "the official pair {release}_encoder.pth + {release}_decoder.pth (bare state dicts, or .safetensors) "
        "in one folder, or diffusers AutoencoderTiny diffusion_pytorch_model.safetensors (file or folder)"
    )
    official: ClassVar[str] = "madebyollin/taesd taesd.py"
    state_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        latent_channels: int = 4,
        channels: int = 64,
        downsample: int = 8,
        midblock_gn: bool = False,
        image_size: int = 512,
        release: str = "taesd",
        weights: str | None = None,
        pretrained: bool = False,
        hub: str = "madebyollin/taesd/diffusion_pytorch_model.safetensors",
    ):
        super().__init__()
        if downsample not in (8, 32):
            raise ValueError(f"TAESD downsample must be 8 or 32, got {downsample}")
        if midblock_gn and downsample != 8:
            raise ValueError("TAESD midblock_gn (the FLUX.2 variant) exists only with downsample=8")
        if latent_channels < 1 or channels < 2:
            raise ValueError(
                f"TAESD needs latent_channels >= 1 and channels >= 2, got {latent_channels}, {channels}"
            )
        self.latent_channels = latent_channels
        self.release = release
        self.encoder = tiny_encoder(
            latent_channels, channels=channels, downsample=downsample, global_norm=midblock_gn
        )
        self.decoder = tiny_decoder(
            latent_channels, channels=channels, upsample=downsample, global_norm=midblock_gn
        )
        self.stride = downsample
        self.max_tokens = (image_size // downsample) ** 2
        self.hub = hub
        self.load_official(weights=weights, pretrained=pretrained, hub=hub)
        self.to(memory_format=torch.channels_last)

    # ---- loading -----------------------------------------------------------------------------
    def load_official(self, *, weights: str | None, pretrained: bool, hub: str) -> None:
        """As the base; a release without a Hub copy (taef2, taesana) says where it lives."""
        if pretrained and not weights and not hub:
            raise CheckpointError(
                f"{self.release}: released only in the git repository github.com/madebyollin/taesd "
                f"({self.release}_encoder.pth, {self.release}_decoder.pth), not on the Hugging Face Hub; "
                f"download both into a folder and pass {self.release}:weights=FOLDER"
            )
        super().load_official(weights=weights, pretrained=pretrained, hub=hub)

    def _pair(self, folder: Path) -> tuple[Path, Path] | None:
        for ext in (".pth", ".safetensors"):
            enc, dec = folder / f"{self.release}_encoder{ext}", folder / f"{self.release}_decoder{ext}"
            if enc.is_file() and dec.is_file():
                return enc, dec
        return None

    def read_official(self, path: Path) -> dict[str, Tensor]:
        """``{key: tensor}`` of the release at ``path``: official pair keys get ``encoder.``/``decoder.``.

        Raises:
            CheckpointError: naming the file or folder, when it is neither layout.
        """
        if path.is_dir():
            pair = self._pair(path)
            if pair is not None:
                enc, dec = pair
                state = {f"encoder.{k}": v for k, v in read_state_dict(enc, keys=()).items()}
                state.update({f"decoder.{k}": v for k, v in read_state_dict(dec, keys=()).items()})
                return state
            diffusers = path / "diffusion_pytorch_model.safetensors"
            if diffusers.is_file():
                if (path / "config.json").is_file():
                    self._check_diffusers_config(path / "config.json")
                return self._read_diffusers(diffusers)
            found = sorted(p.name for p in path.glob("*_encoder.*")) + sorted(
                p.name for p in path.glob("*_decoder.*")
            )
            raise CheckpointError(
                f"{path}: holds neither {self.release}_encoder.pth + {self.release}_decoder.pth nor a diffusers "
                f"diffusion_pytorch_model.safetensors"
                + (f" (found {', '.join(found)}; set release=STEM)" if found else "")
            )
        if path.suffix == ".safetensors":
            return self._read_diffusers(path)
        raise CheckpointError(
            f"{path}: a TAESD release is a pair; pass the folder holding {self.release}_encoder.pth and "
            f"{self.release}_decoder.pth (or a diffusers diffusion_pytorch_model.safetensors)"
        )

    @staticmethod
    def _read_diffusers(path: Path) -> dict[str, Tensor]:
        state = read_state_dict(path, keys=())
        if not any(_DIFFUSERS_KEY.match(k) for k in state):
            raise CheckpointError(
                f"{path}: not a diffusers AutoencoderTiny file (no encoder.layers.* / decoder.layers.* tensors)"
            )
        return state

    def _check_diffusers_config(self, path: Path) -> None:
        cfg = read_json(path)
        if cfg.get("_class_name", "AutoencoderTiny") != "AutoencoderTiny":
            raise CheckpointError(f"{path}: a diffusers {cfg.get('_class_name')}, not an AutoencoderTiny")
        want: dict[str, Any] = {
            "act_fn": "relu",
            "upsample_fn": "nearest",
            "upsampling_scaling_factor": 2,
            "num_encoder_blocks": [1, 3, 3, 3],
            "num_decoder_blocks": [3, 3, 3, 1],
            "latent_channels": self.latent_channels,
        }
        for key, value in want.items():
            if key in cfg and cfg[key] != value:
                raise CheckpointError(
                    f"{path}: AutoencoderTiny {key}={cfg[key]!r}; this TAESD configuration has {value!r}"
                )

    def convert_state(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """diffusers keys -> official keys (``encoder.layers.i`` -> ``encoder.i``, ``decoder.layers.i`` -> ``decoder.{i+1}``)."""
        out: dict[str, Tensor] = {}
        for key, value in state.items():
            m = _DIFFUSERS_KEY.match(key)
            if m is not None:
                part, index, rest = m.group(1), int(m.group(2)), m.group(3)
                key = f"{part}.{index + (1 if part == 'decoder' else 0)}.{rest}"
            out[key] = value
        return out

    # ---- the contract ------------------------------------------------------------------------
    def encode_grid(self, images: Tensor) -> Tensor:
        """Float32 latents ``[B, C, H/s, W/s]`` of images ``[B, 3, H, W]`` in ``[0, 1]``
        (:class:`~vistok.models._grid.ContinuousGrid`)."""
        return self.encoder(images.to(memory_format=torch.channels_last)).contiguous()

    def decode_grid(self, latents: Tensor) -> Tensor:
        """Decoder output ``[B, 3, h s, w s]`` (about ``[0, 1]``, unclamped) of float latents
        (:class:`~vistok.models._grid.ContinuousGrid`)."""
        dtype = next(self.decoder.parameters()).dtype
        return self.decoder(latents.to(dtype).contiguous(memory_format=torch.channels_last)).contiguous()

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Images ``[B, 3, H, W]`` in ``[0, 1]`` -> ``Tokens(latents=float16 [B, C, H/s, W/s])``."""
        self.check_input(images)
        self.check_num_tokens(num_tokens)
        z = self.encode_grid(images)
        b, c, h, w = z.shape
        return Tokens(
            bits=self.rate(b, c * h * w, 16),
            latents=z.to(torch.float16),
            meta={"size": [int(images.shape[-2]), int(images.shape[-1])]},
        )

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """``Tokens`` with latents ``[B, C, h, w]`` -> images ``[B, 3, h s, w s]`` float in ``[0, 1]``."""
        if tokens.latents is None:
            raise ValueError(f"{self.spec}: decode needs latents (continuous tokens)")
        z = tokens.latents
        if z.ndim != 4 or z.shape[1] != self.latent_channels:
            raise ValueError(
                f"{self.spec}: latents must be [B, {self.latent_channels}, h, w], got {tuple(z.shape)}"
            )
        return self.decode_grid(z.float()).float().clamp(0.0, 1.0)


_HUB_DOC = "diffusers copy on the Hub: madebyollin/{0} (diffusion_pytorch_model.safetensors)"

TOKENIZERS.register_variant(
    "taesdxl",
    "taesd",
    doc="TAESD for SDXL latents (4 x H/8 x W/8); " + _HUB_DOC.format("taesdxl"),
    image_size=1024,
    release="taesdxl",
    hub="madebyollin/taesdxl/diffusion_pytorch_model.safetensors",
)
TOKENIZERS.register_variant(
    "taesd3",
    "taesd",
    doc="TAESD for SD3 latents (16 x H/8 x W/8); " + _HUB_DOC.format("taesd3"),
    latent_channels=16,
    image_size=1024,
    release="taesd3",
    hub="madebyollin/taesd3/diffusion_pytorch_model.safetensors",
)
TOKENIZERS.register_variant(
    "taef1",
    "taesd",
    doc="TAESD for FLUX.1 latents (16 x H/8 x W/8); " + _HUB_DOC.format("taef1"),
    latent_channels=16,
    image_size=1024,
    release="taef1",
    hub="madebyollin/taef1/diffusion_pytorch_model.safetensors",
)
TOKENIZERS.register_variant(
    "taef2",
    "taesd",
    doc="TAESD for FLUX.2 latents (32 x H/8 x W/8, global-norm mid blocks); weights only in github.com/madebyollin/taesd",
    latent_channels=32,
    midblock_gn=True,
    image_size=1024,
    release="taef2",
    hub="",
)
TOKENIZERS.register_variant(
    "taesana",
    "taesd",
    doc="TAESD for Sana's DC-AE f32c32 latents (32 x H/32 x W/32); weights only in github.com/madebyollin/taesd",
    latent_channels=32,
    downsample=32,
    image_size=1024,
    release="taesana",
    hub="",
)
