"""Torch modules and their configs (U-Net, VAE, ControlNet and their layers); no file reading."""
