"""Files to models: reading weights, detecting the model kind, key conversion (diffusers and
original layouts), checkpoints, ControlNets, LoRAs and textual-inversion embeddings."""
