"""Inference: ONNX export and the ONNX Runtime path (photos, videos, detection and the web service come next)."""
