"""The files `gpucost profile` writes: the calibration schema (checks at the bottom, calibration,
collectives, torch_model), per-shape rows and plots. Imports only the base and catalog."""
