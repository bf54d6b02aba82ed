"""Tokenizer families: codecs (baselines), conv2d, vit2d, latent1d, adapters."""
