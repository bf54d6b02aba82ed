"""Third-party tokenizers through the vistok contract (one module per library).

Importing this package never imports the third-party libraries; they load when a
tokenizer of theirs is created.
"""

from vistok.models.adapters import hf_diffusers  # noqa: F401  (registers "diffusers")
