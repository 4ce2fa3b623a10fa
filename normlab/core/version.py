"""The engine's version: part of every stored result's key, so a change that alters the numbers recomputes."""

# Bump the second number whenever a probe, a training run or a data set gives other numbers than before.
ENGINE_VERSION = "0.3.0"  # 0.3: the transformer fields and the frame's new config columns
