"""SFT plumbing shared by both recipes: local (CPU) stand-ins for the GPU steps (GGUF conversion,
checkpoint averaging, TensorBoard reading, the CPU trainer), the Slurm jobs that run them and the
checkpoint upload (``steps``), and how far a training run got (``progress``)."""
