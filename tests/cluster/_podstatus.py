"""Pod status documents as the kubelet writes them (pure functions, no I/O).

The agent computes the whole kubelet-owned part of `status` on every change and sends it as a
strategic merge patch: conditions merge by `type` (the scheduler's PodScheduled is kept), container
statuses by `name`, and the two container states that do not apply are sent as null so that a
`waiting` state does not linger next to `running`.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]

HOST_IP = "127.0.0.1"
DEADLINE_REASON = "DeadlineExceeded"
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
SHUTDOWN_REASON = "Terminated"
SHUTDOWN_MESSAGE = "Pod was terminated in response to imminent node shutdown."
KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")


def rfc3339(t: float) -> str:
    """metav1.Time: second precision, UTC, 'Z'."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(t: float) -> str:
    """metav1.MicroTime: always six fractional digits (the API server requires them)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339_nano(t_ns: int) -> str:
    """The kubelet's log timestamp: nine fixed fractional digits."""
    secs, nanos = divmod(t_ns, 1_000_000_000)
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def parse_rfc3339(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


@dataclass
class ContainerState:
    """What the runtime knows about the one container the agent runs."""

    kind: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    message: str | None = None
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None

    def as_api(self, container_id: str | None) -> JSON:
        if self.kind == "waiting":
            waiting: JSON = {"reason": self.reason}
            if self.message:
                waiting["message"] = self.message
            return {"waiting": waiting, "running": None, "terminated": None}
        if self.kind == "running":
            return {
                "waiting": None,
                "running": {"startedAt": rfc3339(self.started_at or time.time())},
                "terminated": None,
            }
        term: JSON = {
            "exitCode": self.exit_code if self.exit_code is not None else 0,
            "reason": self.reason,
            "startedAt": rfc3339(self.started_at) if self.started_at else None,
            "finishedAt": rfc3339(self.finished_at or time.time()),
        }
        if container_id:
            term["containerID"] = container_id
        if self.message:
            term["message"] = self.message
        return {"waiting": None, "running": None, "terminated": term}


def exit_reason(exit_code: int) -> str:
    return "Completed" if exit_code == 0 else "Error"


def exit_code_of(returncode: int) -> int:
    """Popen's negative signal numbers become the runtime's 128+signal."""
    return 128 - returncode if returncode < 0 else returncode


def image_id(image: str) -> str:
    return f"{image.split('@')[0]}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def phase_for(state: ContainerState) -> str:
    """restartPolicy Never: the single container decides the phase."""
    if state.kind == "running":
        return "Running"
    if state.kind == "terminated":
        return "Succeeded" if state.exit_code == 0 else "Failed"
    return "Pending"


class Conditions:
    """Keeps lastTransitionTime stable while a condition's status does not change."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, str]] = {}

    def make(self, ctype: str, status: bool, now: float, reason: str | None = None,
             message: str | None = None) -> JSON:
        value = "True" if status else "False"
        prev = self._seen.get(ctype)
        when = prev[1] if prev and prev[0] == value else rfc3339(now)
        self._seen[ctype] = (value, when)
        cond: JSON = {"type": ctype, "status": value, "lastProbeTime": None,
                      "lastTransitionTime": when}
        cond["reason"] = reason
        cond["message"] = message
        return cond


def pod_status(
    *,
    container: JSON,
    state: ContainerState,
    phase: str,
    start_time: float,
    conditions: Conditions,
    container_id: str | None,
    reason: str | None = None,
    message: str | None = None,
    now: float | None = None,
    restart_count: int = 0,
    last_state: ContainerState | None = None,
    last_container_id: str | None = None,
) -> JSON:
    """The kubelet-owned part of a pod's status for a one-container pod."""
    now = time.time() if now is None else now
    name = container.get("name", "")
    running = state.kind == "running"
    terminal = phase in ("Succeeded", "Failed")
    if terminal:
        not_ready: tuple[str | None, str | None] = ("PodCompleted", None)
    else:
        not_ready = ("ContainersNotReady", f"containers with unready status: [{name}]")
    ready_reason, ready_message = (None, None) if running else not_ready
    image = container.get("image") or ""
    cstatus: JSON = {
        "name": name,
        "image": image,
        "imageID": image_id(image) if state.kind != "waiting" else "",
        "containerID": container_id if state.kind != "waiting" else None,
        "ready": running,
        "started": running,
        "restartCount": restart_count,
        "lastState": {"terminated": last_state.as_api(last_container_id)["terminated"]}
        if last_state is not None and last_state.kind == "terminated" else {},
        "state": state.as_api(container_id),
    }
    return {
        "phase": phase,
        "reason": reason,
        "message": message,
        "hostIP": HOST_IP,
        "hostIPs": [{"ip": HOST_IP}],
        "podIP": HOST_IP,
        "podIPs": [{"ip": HOST_IP}],
        "startTime": rfc3339(start_time),
        "conditions": [
            conditions.make("PodReadyToStartContainers", not terminal, now),
            conditions.make("Initialized", True, now),
            conditions.make("Ready", running, now, ready_reason, ready_message),
            conditions.make("ContainersReady", running, now, ready_reason, ready_message),
        ],
        "containerStatuses": [cstatus],
    }
