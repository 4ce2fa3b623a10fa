"""The dashboard's building blocks: sidebar widgets -> configs, pure figure builders, cached engine calls.

Imports normlab's public API only; never torch.
"""
