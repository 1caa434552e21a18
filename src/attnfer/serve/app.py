"""The attnfer web service (FastAPI): ``POST /v1/predict``, ``GET /v1/model`` (the model's whole config), a page at
``/``, ``/healthz``, OpenAPI at ``/docs``.

    uv run attnfer serve --checkpoint runs/quickstart-.../best --port 8000

Limits (``ServeLimits``): request body size (default 10 MB; a ``Content-Length`` header is required for uploads),
the time an upload may take to arrive (408 after it, the connection closed), decoded pixel count (default 40 MP,
checked on the image header before decoding: 413), accepted image types, and a per-request inference timeout (504).
Every 4xx/5xx answer is JSON: ``{"error": {"status": 415, "message": "..."}}``. Inference runs in a worker thread
behind a lock (OpenCV's DNN detector is not thread-safe), so the event loop keeps answering while a request runs.
A client that goes away mid-upload is dropped quietly (no traceback in the log).

Access: with an ``api_key``, every route but ``/healthz`` and the page at ``/`` (static; it asks for the key) answers
401 without ``Authorization: Bearer KEY`` (compared in constant time). Requests from a browser page of another
origin (an ``Origin`` header naming another host) are refused with 403 unless ``cors_origins`` lists that origin,
which also gets the CORS headers a browser needs to call the service.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect

from .. import __version__
from ..images import ImageReadError, read_rgb
from ..inference import Recognizer

__all__ = ["ACCEPTED_TYPES", "ServeLimits", "create_app"]

ACCEPTED_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif", "image/tiff")


@dataclass(frozen=True)
class ServeLimits:
    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000
    timeout_s: float = 30.0  #: inference (decoding, detection, classification) of one request
    upload_timeout_s: float = 30.0  #: receiving one request's body


class Face(BaseModel):
    box: list[int] = Field(description="x, y, width, height in pixels of the uploaded image")
    detector_score: float
    label: str
    probabilities: dict[str, float]


class Prediction(BaseModel):
    width: int
    height: int
    faces: list[Face]
    detector: str
    ms: float = Field(description="server-side time for decoding, detection and classification")


class Health(BaseModel):
    status: str
    version: str
    model: str = Field(
        description="the model by its config: family, then what it was trained on (dataset, run, recipe) or "
        "imported from"
    )
    family: str = Field(description="registered model name")
    training: dict[str, Any] | None = Field(description="dataset, run and recipe it was trained with, if recorded")
    imported: dict[str, Any] | None = Field(description="the authors' checkpoint it was converted from, if any")
    run: str | None = Field(description="the training run's directory name, if recorded")
    warning: str | None = Field(description="set when the model is not meant for real photos (trained on SynthFER)")
    checkpoint: str = Field(description="the served checkpoint's path")
    runtime: str
    detector: str
    detector_fallback: str | None = Field(description="why `auto` did not give BlazeFace, when it did not")
    detector_hint: str | None = Field(description="after a detector fallback: how to get BlazeFace")
    classes: list[str]
    auth: bool = Field(description="whether the other routes need 'Authorization: Bearer KEY' (serve --api-key)")


class ModelInfo(BaseModel):
    name: str = Field(description="registered model name")
    description: str = Field(description="family and training data or import, as /healthz's 'model'")
    training: dict[str, Any] | None
    imported: dict[str, Any] | None
    warning: str | None
    checkpoint: str = Field(description="the served checkpoint's path")
    runtime: str
    device: str = Field(description="where the model runs: cpu, cuda:0, ... (serve --device)")
    class_names: list[str]
    config: dict[str, Any] = Field(
        description="the model's whole config (input contract under 'preprocess'), as saved with the model"
    )


class ErrorBody(BaseModel):
    status: int
    message: str


class Error(BaseModel):
    error: ErrorBody


class _RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "message": message}}, status_code=status, headers=headers)


#: routes answered without the API key: the health check, and the static page (it asks for the key)
OPEN_PATHS = frozenset({"/healthz", "/"})


def _bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header (scheme case-insensitive), or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _key_matches(given: str | None, key: str) -> bool:
    """Constant-time comparison of a presented key with the service's (``hmac.compare_digest`` on the bytes)."""
    return hmac.compare_digest((given or "").encode("utf-8"), key.encode("utf-8"))


def _origin_host(origin: str) -> str | None:
    """``host[:port]`` of an ``Origin`` header (lower case), or None for ``null`` and anything unparsable."""
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return None
    return parts.netloc.lower() if parts.scheme and parts.netloc else None


def _pixel_count(message: str) -> int | None:
    m = re.search(r"\((\d+) pixels\)", message)
    return int(m.group(1)) if m else None


def create_app(
    rec: Recognizer,
    limits: ServeLimits | None = None,
    checkpoint: str | None = None,
    runtime: str | None = None,
    model_name: str | None = None,
    api_key: str | None = None,
    cors_origins: Sequence[str] = (),
):
    """A FastAPI app serving ``rec`` (any Recognizer: torch or ONNX runtime, any detector); ``app.state.recognizer``
    is ``rec``. ``runtime`` names the runtime in the answers (default: the recognizer's); ``checkpoint`` the served
    checkpoint (default: the recognizer's; ``model_name`` is its former name). The model itself is named by its
    config (:attr:`Recognizer.origin`), never by its folder.

    ``api_key``: required as ``Authorization: Bearer KEY`` by every route but ``/healthz`` and the page (401 JSON
    otherwise). ``cors_origins``: browser origins (``https://host[:port]``) allowed to call the service from their
    pages; requests from any other origin are refused (403)."""
    limits = limits or ServeLimits()
    api_key = api_key or None
    allowed_origins = [o.strip().rstrip("/") for o in cors_origins if o.strip()]
    runtime = runtime or rec.runtime_name
    checkpoint = checkpoint or model_name or (str(rec.checkpoint) if rec.checkpoint is not None else "")
    origin = rec.origin
    lock = threading.Lock()
    app = FastAPI(
        title="attnfer",
        version=__version__,
        description="Facial expression recognition: upload a photo, get one result per detected face.",
    )
    app.state.recognizer = rec
    page = (files("attnfer.serve") / "static" / "index.html").read_text()

    @app.middleware("http")
    async def body_limit(request: Request, call_next):
        origin = request.headers.get("origin")
        if origin is not None and origin.rstrip("/") not in allowed_origins:
            hosts = {h.lower() for h in (request.headers.get("host"), request.headers.get("x-forwarded-host")) if h}
            if _origin_host(origin) not in hosts:
                return _error(
                    403,
                    f"cross-origin request from {origin!r} refused; start the service with --cors-origin {origin} "
                    "to allow pages of that origin",
                )
        authorization = request.headers.get("authorization")
        if (
            api_key is not None
            and request.url.path not in OPEN_PATHS
            and not _key_matches(_bearer(authorization), api_key)
        ):
            given = "a wrong key" if authorization else "no key"
            return _error(
                401,
                f"this service needs an API key: send 'Authorization: Bearer KEY' ({given} was sent)",
                {"WWW-Authenticate": "Bearer"},
            )
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None:
                return _error(411, "a Content-Length header is required (chunked uploads are not accepted)")
            if not length.isdigit():
                return _error(400, f"Content-Length must be a number, got {length!r}")
            if int(length) > limits.max_bytes:
                return _error(413, f"upload of {int(length)} bytes exceeds the limit of {limits.max_bytes} bytes")
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError):
        return _error(422, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))

    @app.exception_handler(_RequestError)
    async def rejected(_: Request, exc: _RequestError):
        return _error(exc.status, exc.message)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    @app.get("/healthz", response_model=Health)
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "model": origin.description,
            "family": origin.family,
            "training": origin.training,
            "imported": origin.imported,
            "run": origin.run,
            "warning": origin.warning,
            "checkpoint": checkpoint,
            "runtime": runtime,
            "detector": rec.detector.name,
            "detector_fallback": getattr(rec.detector, "fallback_reason", None),
            "detector_hint": getattr(rec.detector, "hint", None),
            "classes": rec.class_names,
            "auth": api_key is not None,
        }

    @app.get("/v1/model", response_model=ModelInfo)
    async def model_info() -> dict[str, Any]:
        """The served model: its name, what it was trained on or imported from, runtime, class names and whole
        config (what inputs it takes and how a face is preprocessed for it, paper, deviations)."""
        return {
            "name": rec.model_name,
            "description": origin.description,
            "training": origin.training,
            "imported": origin.imported,
            "warning": origin.warning,
            "checkpoint": checkpoint,
            "runtime": runtime,
            "device": rec.device,
            "class_names": rec.class_names,
            "config": rec.config,
        }

    error_responses = {s: {"model": Error} for s in (400, 401, 403, 408, 411, 413, 415, 422, 504)}

    @app.post(
        "/v1/predict",
        response_model=Prediction,
        responses=error_responses,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "string", "format": "binary"}},
                            "required": ["file"],
                        }
                    },
                    **{t: {"schema": {"type": "string", "format": "binary"}} for t in ACCEPTED_TYPES},
                },
            }
        },
    )
    async def predict(request: Request) -> dict[str, Any]:
        """Expressions of the faces in one image: a multipart upload (field ``file``) or the raw image bytes with an
        image content type."""
        try:
            data, name, ctype = await asyncio.wait_for(_read_upload(request), timeout=limits.upload_timeout_s)
        except TimeoutError:
            # the rest of the body may never come: answer, and close the connection rather than wait for it
            return _error(
                408,
                f"the upload did not arrive within {limits.upload_timeout_s:g} s",
                {"Connection": "close"},
            )
        except ClientDisconnect:
            return _error(400, "the client went away during the upload")  # nobody reads it; nothing to log
        if ctype not in ACCEPTED_TYPES:
            raise _RequestError(
                415,
                f"{name}: content type {ctype or 'missing'!r} is not accepted; send one of {', '.join(ACCEPTED_TYPES)}",
            )
        if not data:
            raise _RequestError(400, f"{name}: the upload is empty")

        def work() -> dict[str, Any]:
            with lock:
                t = time.perf_counter()
                image = read_rgb(io.BytesIO(data), max_pixels=limits.max_pixels, name=name)
                faces = rec.predict(image, source=name)
                return {
                    "width": image.shape[1],
                    "height": image.shape[0],
                    "faces": [f.to_dict() for f in faces],  # the response model keeps Face's fields
                    "detector": rec.detector.name,
                    "ms": round((time.perf_counter() - t) * 1000, 2),
                }

        try:
            return await asyncio.wait_for(asyncio.to_thread(work), timeout=limits.timeout_s)
        except ImageReadError as e:
            if isinstance(e.__cause__, Image.DecompressionBombError):
                # Pillow refuses far larger images itself, on the header, before our own check runs
                pixels = _pixel_count(str(e.__cause__))
                limit = limits.max_pixels
                if pixels is not None and pixels <= limit:  # --max-megapixels above Pillow's own limit
                    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
                size = f"{pixels} pixels, " if pixels else ""
                raise _RequestError(413, f"{name}: {size}more than the limit of {limit}") from None
            status = 413 if "more than the limit" in str(e) else 422
            raise _RequestError(status, str(e)) from None
        except TimeoutError:
            raise _RequestError(504, f"{name}: not processed within {limits.timeout_s:g} s") from None

    if allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=allowed_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    return app


async def _read_upload(request: Request) -> tuple[bytes, str, str]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=4)
        except MultiPartException as e:
            raise _RequestError(400, f"malformed multipart body: {e.message}") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise _RequestError(422, "multipart field 'file' with an image is required")
        data = await upload.read()
        return data, upload.filename or "upload", (upload.content_type or "").split(";")[0].strip().lower()
    return await request.body(), "upload", ctype
