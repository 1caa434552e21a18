"""Inference: face detection, recognition on photos, ONNX export and the ONNX Runtime path."""

from .faces import Face, FaceDetector, create_detector, crop_face
from .recognizer import FaceResult, ImageReadError, Recognizer, read_rgb

__all__ = [
    "Face",
    "FaceDetector",
    "FaceResult",
    "ImageReadError",
    "Recognizer",
    "create_detector",
    "crop_face",
    "read_rgb",
]
