"""ECS task scale-in protection, so that a scale-in stops an idle task rather than a busy one."""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.request
from typing import Any

log = logging.getLogger("vqa.worker")


class TaskProtection:
    """ECS task scale-in protection through the agent endpoint (a no-op outside ECS).

    While a task works on a job, a scale-in (the backlog dropped because *another* job ended)
    must pick an idle task, not this one.
    """

    #: Protection expires after this long unless renewed (a hung task must not keep it forever).
    MINUTES = 60

    def __init__(self, agent_uri: str | None) -> None:
        self.agent_uri = agent_uri
        self._since: float | None = None

    @classmethod
    def from_env(cls) -> TaskProtection:
        return cls(os.environ.get("ECS_AGENT_URI"))

    def renew(self) -> None:
        """Called as segments complete: extend the protection at half its lifetime."""
        if self._since is not None and time.monotonic() - self._since > self.MINUTES * 30:
            self.set(True)

    def set(self, enabled: bool) -> None:
        if not self.agent_uri:
            return
        self._since = time.monotonic() if enabled else None
        body: dict[str, Any] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = self.MINUTES
        req = urllib.request.Request(
            f"{self.agent_uri}/task-protection/v1/state",
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=3) as resp:
                resp.read()
        except Exception as exc:
            log.warning("task protection not updated", extra={"error": str(exc)})
