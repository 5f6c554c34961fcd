"""The back-tests `gpucost validate` prints: default estimates against published runs (runs), the
step model against published layouts (layouts), and each training stack against measured steps (stack_runs)."""
