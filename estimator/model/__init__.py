"""What is trained: architectures, config.json parsing, exact parameter and FLOP counts, fine-tuning
(LoRA, QLoRA), training memory per device, and the model report. Imports only the base (errors, vocab, numbers) and catalog."""
