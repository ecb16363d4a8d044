"""cadenza_gateway: the HTTP API (FastAPI) in front of Cadenza's workflows and runs."""

from .app import create_app
from .problems import Problem, ProblemError
from .server import Gateway
from .settings import GatewaySettings

__all__ = ["Gateway", "GatewaySettings", "Problem", "ProblemError", "create_app"]
