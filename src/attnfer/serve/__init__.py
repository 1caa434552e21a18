"""The web service: a FastAPI app with a page, run by uvicorn (``attnfer serve``)."""

from .app import ACCEPTED_TYPES, ServeLimits, create_app

__all__ = ["ACCEPTED_TYPES", "ServeLimits", "create_app"]
