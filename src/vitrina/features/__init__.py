"""Per-modality preprocessing that turns raw catalogue and review content into model inputs."""
