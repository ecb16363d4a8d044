"""HTTP layer: dependencies (``deps``) and route modules (``routes``)."""

from .main import api_router

__all__ = ["api_router"]
