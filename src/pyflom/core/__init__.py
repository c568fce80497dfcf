"""The sans-IO lock core: resources, lock modes and queues as pure state machines."""

from .resource import Grant, Request, Resource, Verdict
from .table import Answer, LockTable, ProtocolViolation

__all__ = ["Answer", "Grant", "LockTable", "ProtocolViolation", "Request", "Resource", "Verdict"]
