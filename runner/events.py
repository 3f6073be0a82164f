"""Kubernetes Events (events.k8s.io/v1) recorded by the runner and the launcher.

One recorder for both: an Event says, where OpenShift users already look (`oc describe`,
`oc get events`, the console's Events page), how a user's run ended. They are few by design:
the runner records one per run (`Provisioned` or `StepFailed`), the launcher one per user
when it sees that user finish; never one per watch event. Recording is best effort: a
refused or failed Event is logged once and never fails the run. The note is redacted and
clipped to the API's 1024 bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from runner.errors import RunnerError
from runner.kube import Cluster, Kube
from runner.logs import Logger, one_line, redact
from runner.waits import CancelToken, Deadline, Obj

API_VERSION = "events.k8s.io/v1"
REPORTING_CONTROLLER = "workshop-runner"
NOTE_LIMIT = 1024  # events.k8s.io validation: note at most 1024 bytes
INSTANCE_LIMIT = 128  # ... reportingInstance at most 128 characters
RECORD_SECONDS = 5.0


@dataclass(frozen=True)
class Regarding:
    """The object an Event is about; the Event lives in `namespace`."""

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str | None = None

    def as_ref(self) -> Obj:
        ref: Obj = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
        }
        if self.uid:
            ref["uid"] = self.uid
        return ref


@dataclass(frozen=True)
class Note:
    """What happened: Normal or Warning, a CamelCase reason, the action, a sentence."""

    type: str
    reason: str
    action: str
    text: str


def event_body(regarding: Regarding, note: Note, instance: str, name: str | None = None) -> Obj:
    """The Event object; `name` defaults to client-go's `<object>.<hex nanoseconds>`."""
    now = datetime.now(UTC)
    text = redact(one_line(note.text))
    if len(text.encode()) > NOTE_LIMIT:  # the API counts bytes
        text = text.encode()[: NOTE_LIMIT - 3].decode(errors="ignore") + "..."
    return {
        "apiVersion": API_VERSION,
        "kind": "Event",
        "metadata": {
            "name": name or f"{regarding.name}.{time.time_ns():x}",
            "namespace": regarding.namespace,
        },
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "reportingController": REPORTING_CONTROLLER,
        "reportingInstance": instance[:INSTANCE_LIMIT],
        "action": note.action,
        "reason": note.reason,
        "regarding": regarding.as_ref(),
        "note": text,
        "type": note.type,
    }


class Recorder:
    """Creates Events with its own short deadline; after the first failure it logs once and
    stops trying (a missing permission would otherwise cost one refused request per user)."""

    def __init__(self, cluster: Cluster, log: Logger, instance: str) -> None:
        self.cluster, self.log, self.instance = cluster, log, instance
        self.recorded = 0
        self.broken: str | None = None

    def record(self, regarding: Regarding, note: Note, name: str | None = None) -> bool:
        if self.broken is not None:
            return False
        kube = Kube(
            self.cluster,
            log=self.log,
            deadline=Deadline.after(RECORD_SECONDS),
            cancel=CancelToken(),
        )
        body = event_body(regarding, note, self.instance, name)
        try:
            if kube.create(body) is None:
                return False  # AlreadyExists: the same deterministic name, recorded already
        except RunnerError as e:
            self.broken = str(e)
            self.log.warning(
                "could not record an Event (no more will be tried)",
                object=f"{regarding.kind} {regarding.namespace}/{regarding.name}",
                reason=note.reason,
                error=str(e),
            )
            return False
        self.recorded += 1
        return True
