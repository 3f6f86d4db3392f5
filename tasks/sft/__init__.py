"""Local (CPU) stand-ins for the GPU steps of SFT: GGUF conversion, checkpoint averaging, TensorBoard reading."""
