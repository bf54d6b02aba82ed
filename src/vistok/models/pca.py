"""``pca``: ordered linear tokens (the solution of nested dropout on a linear autoencoder).

Rippel et al. (2014) show that nested dropout on a *linear* autoencoder recovers PCA with its
components in order. So PCA is the floor of every variable-length 1D tokenizer: any prefix
of ``k`` tokens is the best linear ``k``-token code, and a learned 1D model must beat it at
equal bits to have learned anything non-linear.

Model: images are resized (antialiased) to ``basis_size x basis_size``, flattened, centred by
the fitted mean and projected on the first ``tokens x coeffs_per_token`` principal
components (fitted on the training corpus with :meth:`PCATokenizer.fit`). Each coefficient
is divided by its component's standard deviation, clipped to ``+-clip`` and quantized
uniformly to ``2^bits`` levels; token ``t`` holds coefficients ``t c .. t c + c - 1``, so a
token is one id in ``[0, 2^(bits c))`` and carries ``bits x c`` bits. Decoding keeps the
first ``k`` tokens (the rest are zero, i.e. the mean), reconstructs at ``basis_size`` and
resizes back (bicubic) to the input size.

Any input size works (the basis is applied after resizing to ``basis_size``); the rate is
``k x bits x coeffs_per_token`` bits whatever the size.

Tokens: ``ids`` long ``[B, k]``, ``lengths`` long ``[B]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vistok.registry import TOKENIZERS
from vistok.tokenizer import Tokenizer
from vistok.tokens import Tokens

__all__ = ["PCATokenizer"]


@TOKENIZERS.register(
    "pca", doc="Ordered PCA tokens (nested dropout's linear solution); fit with ``.fit(images)`` first."
)
class PCATokenizer(Tokenizer):
    """Ordered PCA tokens with uniformly quantized coefficients (see the module docstring).

    Args:
        basis_size: side of the square the components live on.
        tokens: ``N`` tokens (``max_tokens``).
        coeffs_per_token: coefficients ``c`` per token.
        bits: bits per coefficient.
        clip: coefficients are clipped to ``+-clip`` standard deviations before quantizing.
    """

    kind = "discrete"
    variable_length = True
    baseline = True  # a reference, not a tokenizer to compare codecs against (bench: no equal-bytes points)

    def __init__(
        self,
        *,
        basis_size: int = 64,
        tokens: int = 64,
        coeffs_per_token: int = 2,
        bits: int = 8,
        clip: float = 4.0,
    ):
        super().__init__()
        if tokens < 1 or coeffs_per_token < 1 or not 1 <= bits <= 16 or bits * coeffs_per_token > 62:
            raise ValueError(
                f"pca: need tokens >= 1, coeffs_per_token >= 1, 1 <= bits <= 16 and bits x coeffs <= 62; "
                f"got tokens={tokens}, coeffs_per_token={coeffs_per_token}, bits={bits}"
            )
        d = 3 * basis_size * basis_size
        n = tokens * coeffs_per_token
        if n > d:
            raise ValueError(f"pca: {n} components exceed the {d} dimensions of a {basis_size}^2 image")
        self.basis_size, self.coeffs, self.bits, self.clip = basis_size, coeffs_per_token, bits, clip
        self.register_buffer("mean", torch.zeros(d))
        # rows: orthonormal, in order; stored at float16 (half the checkpoint; the error is far
        # below the coefficients' quantization step), used at float32
        self.register_buffer("components", torch.zeros(n, d, dtype=torch.float16))
        self.register_buffer("scales", torch.ones(n))  # std of each coefficient on the fit data
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.max_tokens = tokens
        self.vocab_size = 2 ** (bits * coeffs_per_token)
        self.input_size = None
        self.stride = 1

    # ---- fitting -----------------------------------------------------------------------------
    @torch.no_grad()
    def fit(self, images: Tensor) -> PCATokenizer:
        """Fit mean and components on float ``[M, 3, H, W]`` in [0, 1] (``M`` >= components).

        Uses the exact SVD of the centred ``[M, d]`` data (``M`` of a few thousand crops).
        """
        n = self.components.shape[0]
        x = self._flat(images.float()).double()
        if x.shape[0] < n:
            raise ValueError(f"pca.fit: {x.shape[0]} images for {n} components; give at least {n}")
        mean = x.mean(0)
        xc = x - mean
        # eigenvectors of the d x d covariance via the smaller Gram matrix when M < d
        if xc.shape[0] < xc.shape[1]:
            gram = xc @ xc.T
            evals, evecs = torch.linalg.eigh(gram)
            order = evals.argsort(descending=True)[:n]
            comps = (xc.T @ evecs[:, order]) / evals[order].clamp_min(1e-12).sqrt()
            comps = comps.T
        else:
            _, _, vh = torch.linalg.svd(xc, full_matrices=False)
            comps = vh[:n]
        self.mean.copy_(mean.float())
        self.components.copy_(comps.to(self.components.dtype))
        coeff = xc @ self.components.double().T  # the stored (rounded) components define the scales
        self.scales.copy_(coeff.std(0).clamp_min(1e-8).float())
        self.fitted.fill_(True)
        return self

    # ---- helpers -----------------------------------------------------------------------------
    def _flat(self, images: Tensor) -> Tensor:
        s = self.basis_size
        if images.shape[-2:] != (s, s):
            images = F.interpolate(images, size=(s, s), mode="bicubic", antialias=True, align_corners=False)
        return images.reshape(images.shape[0], -1)

    def _levels(self) -> int:
        return 2**self.bits

    @property
    def index_factors(self) -> list[int] | None:
        """A token id is ``coeffs_per_token`` coefficient levels of ``2^bits`` each, the first
        coefficient least significant (see :meth:`encode`)."""
        return [self._levels()] * self.coeffs

    def _quantize(self, coeff: Tensor) -> Tensor:
        """Standardized coefficients -> integer levels ``[0, 2^bits)`` (mid-rise, clipped)."""
        L = self._levels()
        u = (coeff.clamp(-self.clip, self.clip) + self.clip) / (2 * self.clip)  # [0, 1]
        return (u * L).floor().clamp(0, L - 1).long()

    def _dequantize(self, q: Tensor) -> Tensor:
        L = self._levels()
        return ((q.float() + 0.5) / L) * (2 * self.clip) - self.clip

    # ---- contract ----------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Float ``[B, 3, H, W]`` in [0, 1] -> ``ids [B, k]`` (``k = num_tokens or N``)."""
        self.check_input(images)
        if not bool(self.fitted):
            raise RuntimeError(f"{self.spec}: not fitted; call .fit(images) or load a fitted checkpoint")
        k = self.check_num_tokens(num_tokens) or self.max_tokens
        assert k is not None
        b, c = images.shape[0], self.coeffs
        comps = self.components[: k * c].float()
        coeff = (self._flat(images.float()) - self.mean) @ comps.T / self.scales[: k * c]
        q = self._quantize(coeff).reshape(b, k, c)
        place = (self._levels() ** torch.arange(c, device=q.device)).long()
        ids = (q * place).sum(-1)
        bits = torch.full((b,), float(k * c * self.bits), dtype=torch.float64)
        lengths = torch.full((b,), k, dtype=torch.long, device=images.device)
        return Tokens(
            bits=bits, ids=ids, lengths=lengths, meta={"size": [images.shape[-2], images.shape[-1]]}
        )

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """``ids [B, k]`` -> float ``[B, 3, H, W]`` in [0, 1] (``H, W`` from the tokens' meta,
        else ``basis_size``)."""
        if tokens.ids is None:
            raise ValueError(f"{self.spec}: tokens carry no ids")
        ids = tokens.ids.long()
        b, k = ids.shape
        if not 1 <= k <= (self.max_tokens or 0):
            raise ValueError(f"{self.spec}: decodes 1..{self.max_tokens} tokens, got {k}")
        c, L = self.coeffs, self._levels()
        q = torch.stack([(ids // L**j) % L for j in range(c)], -1)  # [B, k, c]
        coeff = self._dequantize(q).reshape(b, k * c)
        if tokens.lengths is not None:  # positions past a length are dropped (mean)
            keep = torch.arange(k, device=ids.device)[None] < tokens.lengths.to(ids.device)[:, None]
            coeff = coeff * keep.repeat_interleave(c, dim=1)
        x = self.mean + (coeff * self.scales[: k * c]) @ self.components[: k * c].float()
        s = self.basis_size
        img = x.reshape(b, 3, s, s)
        h, w = tokens.meta.get("size", [s, s])
        if (h, w) != (s, s):
            img = F.interpolate(img, size=(int(h), int(w)), mode="bicubic", align_corners=False)
        return img.clamp(0.0, 1.0)

    @property
    def bits_per_token(self) -> float:
        return float(self.coeffs * self.bits)

    def extra_repr(self) -> str:
        return (
            f"basis_size={self.basis_size}, tokens={self.max_tokens}, coeffs_per_token={self.coeffs}, "
            f"bits={self.bits}, clip={self.clip}, bits/token={self.coeffs * self.bits}, "
            f"fitted={bool(self.fitted)}"
        )
