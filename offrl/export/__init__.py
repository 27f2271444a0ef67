"""Policies to framework-free artefacts: ONNX (onnxruntime) and .npz with a NumPy-only forward pass
(`offrl export`). Everything goes through one traced program (offrl/export/program.py)."""
