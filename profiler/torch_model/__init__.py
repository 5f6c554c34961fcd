"""Your own PyTorch model's training step (`gpucost profile --torch-model SPEC`): finding the callable
(spec), the models built in (builtin) and the timed step with its FLOP count (step)."""
