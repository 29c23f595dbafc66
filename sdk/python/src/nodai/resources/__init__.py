"""One module per group of admin endpoints: ``keys``, ``workflows``, ``webhooks``.

Each holds a sync class and its async twin, both thin: they shape the request
and parse the answer; sending, retrying and errors are ``nodai._base``.
"""

from .keys import AsyncKeys, Keys
from .webhooks import AsyncWebhooks, Webhooks
from .workflows import AsyncWorkflows, Workflows

__all__ = ["Keys", "AsyncKeys", "Workflows", "AsyncWorkflows", "Webhooks", "AsyncWebhooks"]
