"""vistok: visual tokenizers on one contract and one benchmark protocol.

import vistok
tok = vistok.create("webp:quality=50")
tokens = tok.encode(images)          # images: float [B, 3, H, W] in [0, 1]
recon = tok.decode(tokens)
"""

from vistok.hub import create, list_tokenizers, load
from vistok.tokenizer import Tokenizer
from vistok.tokens import Tokens

__version__ = "0.2.0"

list = list_tokenizers

__all__ = ["Tokenizer", "Tokens", "__version__", "create", "list", "list_tokenizers", "load"]
