"""Torch-free facts: the catalog (normalizers, metrics, architecture families), the frozen configs and
presets, the shared field checks, the deadline and the engine version. Imports neither torch nor pandas."""
