"""A served model's life after deployment: feedback (feedback.py), the retraining criteria as a pure function
(criteria.py), the retraining hook (hook.py), the gate (gate.py), and the watcher that ties them to the
repository with the swap and the rollback (manager.py)."""

from ..config import RetrainPolicy
from .manager import Conflict, Lifecycle

__all__ = ["Conflict", "Lifecycle", "RetrainPolicy"]
