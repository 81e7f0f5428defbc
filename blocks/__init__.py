"""Prefect Block types of the project; register them with `prefect block register -m blocks`."""

from blocks.llm_endpoint import LLMEndpoint
from blocks.monitoring_policy import MonitoringPolicy
from blocks.session_store import SessionStore
from blocks.storage_target import StorageTarget

ALL_BLOCK_TYPES = (StorageTarget, LLMEndpoint, SessionStore, MonitoringPolicy)

__all__ = ["ALL_BLOCK_TYPES", "LLMEndpoint", "MonitoringPolicy", "SessionStore", "StorageTarget"]
