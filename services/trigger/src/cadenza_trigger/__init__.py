"""cadenza_trigger: the trigger service (upstream Kafka events and cron schedules start runs)."""

from .consumer import TriggerConsumer
from .scheduler import Scheduler
from .service import TriggerService
from .settings import TriggerSettings

__all__ = ["Scheduler", "TriggerConsumer", "TriggerService", "TriggerSettings"]
