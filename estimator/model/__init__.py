"""What is trained: architectures, config.json parsing, exact parameter and FLOP counts, training
memory per device, and the model report. Imports only the base (errors, vocab, numbers) and catalog."""
