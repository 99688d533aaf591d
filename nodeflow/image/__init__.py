"""Pixels: image tensor operations, image files, preprocessors and the VAE that turns latents into
images and back."""
