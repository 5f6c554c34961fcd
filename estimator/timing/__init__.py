"""How long a step takes: the step-time model and layout search (step, layout), the flat model's
throughput and utilisation defaults, and throughput measured in calibration files. Imports model, catalog, records."""
