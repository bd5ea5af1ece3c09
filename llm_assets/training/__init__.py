"""Training: presets, devices, the Trainer loop (also the torchrun entry point), generation."""
