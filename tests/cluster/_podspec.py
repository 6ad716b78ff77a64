"""Turning a pod spec into a process: environment, $(VAR) expansion, argv, user and group.

Mirrors the kubelet's rules: envFrom first, then env in order, each literal `value` expanded
against the variables defined before it; command and args expanded against the final
environment; unresolvable `$(VAR)` stays as written and `$$` escapes a dollar. Missing Secrets,
ConfigMaps or keys that are not optional raise ConfigError (the kubelet's
CreateContainerConfigError); a container that cannot be started raises StartError.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

# (kind, namespace, name) -> data as str->str, or None when the object does not exist.
Lookup = Callable[[str, str, str], "dict[str, str] | None"]


class ConfigError(Exception):
    """The container's configuration references something missing (CreateContainerConfigError)."""


class StartError(Exception):
    """The container cannot be started at all (StartError, exit code 128)."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Expand `$(NAME)` like the kubelet: unknown names stay literal, `$$` is a lone `$`."""
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close == -1:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2 : close]
                out.append(env[name] if name in env else f"$({name})")
                i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def decode_secret_data(data: Mapping[str, str] | None) -> dict[str, str]:
    return {
        k: base64.b64decode(v).decode("utf-8", errors="replace") for k, v in (data or {}).items()
    }


_FIELD_INDEX = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_value(pod: JSON, path: str, host_ip: str) -> str:
    """Value of a downward-API fieldRef path."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
        "status.podIP": host_ip,
        "status.podIPs": host_ip,
    }
    if path in simple:
        return str(simple[path])
    m = _FIELD_INDEX.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


_SUFFIX = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
}


def parse_quantity(q: str | int | float) -> float:
    s = str(q).strip()
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if s.endswith(suffix) and s[: -len(suffix)]:
            return float(s[: -len(suffix)]) * _SUFFIX[suffix]
    return float(s)


def resource_value(container: JSON, ref: JSON, allocatable: Mapping[str, str]) -> str:
    """resourceFieldRef: limits fall back to the node's allocatable, as in the kubelet."""
    res = ref.get("resource", "")
    kind, _, name = res.partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(name)
    if value is None:
        value = allocatable.get(name, "0")
    divisor = parse_quantity(ref.get("divisor") or "1") or 1.0
    return str(math.ceil(parse_quantity(value) / divisor))


@dataclass
class EnvResult:
    env: dict[str, str]
    skipped: list[str] = field(default_factory=list)  # envFrom keys that are not valid names


def build_env(
    pod: JSON,
    container: JSON,
    lookup: Lookup,
    service_env: Mapping[str, str],
    host_ip: str = "127.0.0.1",
    allocatable: Mapping[str, str] | None = None,
) -> EnvResult:
    """The container's environment (without the image defaults such as PATH)."""
    namespace = pod.get("metadata", {}).get("namespace", "default")
    result = EnvResult(env={})
    env = result.env
    cache: dict[tuple[str, str], dict[str, str] | None] = {}

    def source(kind: str, name: str) -> dict[str, str] | None:
        if (kind, name) not in cache:
            cache[(kind, name)] = lookup(kind, namespace, name)
        return cache[(kind, name)]

    for ef in container.get("envFrom") or []:
        prefix = ef.get("prefix") or ""
        for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
            ref = ef.get(key)
            if ref is None:
                continue
            data = source(kind, ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind.lower()} "{ref.get("name", "")}" not found')
            for k, v in data.items():
                name = prefix + k
                if not name or "=" in name:
                    result.skipped.append(name)
                    continue
                env[name] = v

    for item in container.get("env") or []:
        name = item["name"]
        if "valueFrom" not in item:
            context = {**service_env, **env}
            env[name] = expand(item.get("value") or "", context)
            continue
        vf = item["valueFrom"]
        if "fieldRef" in vf:
            env[name] = field_value(pod, vf["fieldRef"].get("fieldPath", ""), host_ip)
        elif "resourceFieldRef" in vf:
            env[name] = resource_value(container, vf["resourceFieldRef"], allocatable or {})
        else:
            for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                ref = vf.get(key)
                if ref is None:
                    continue
                data = source(kind, ref.get("name", ""))
                optional = bool(ref.get("optional"))
                if data is None:
                    if optional:
                        break
                    raise ConfigError(f'{kind.lower()} "{ref.get("name", "")}" not found')
                if ref.get("key") not in data:
                    if optional:
                        break
                    where = f"{namespace}/{ref.get('name')}"
                    raise ConfigError(f"couldn't find key {ref.get('key')} in {kind} {where}")
                env[name] = data[ref["key"]]
                break
    for k, v in service_env.items():
        env.setdefault(k, v)
    return result


NO_COMMAND = (
    "container {name!r} has no command: the node agent runs processes, not images, so there is no "
    "image ENTRYPOINT to run{args}; set spec.containers[0].command"
)


def container_argv(container: JSON, env: Mapping[str, str]) -> list[str]:
    """command + args with $(VAR) expanded; args without command cannot run here."""
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    if not command:
        hint = " (args alone only feed an image ENTRYPOINT)" if args else ""
        raise StartError(NO_COMMAND.format(name=container.get("name", ""), args=hint))
    return [expand(c, env) for c in command] + [expand(a, env) for a in args]


@dataclass(frozen=True)
class Identity:
    uid: int | None
    gid: int | None
    groups: tuple[int, ...]


def identity(pod: JSON, container: JSON) -> Identity:
    """runAsUser/runAsGroup/supplementalGroups: the container's context overrides the pod's."""
    pod_sc = pod.get("spec", {}).get("securityContext") or {}
    ctr_sc = container.get("securityContext") or {}

    def pick(key: str) -> Any:
        return ctr_sc.get(key, pod_sc.get(key))

    uid = pick("runAsUser")
    gid = pick("runAsGroup")
    groups = tuple(int(g) for g in pod_sc.get("supplementalGroups") or [])
    if pod_sc.get("fsGroup") is not None:
        groups += (int(pod_sc["fsGroup"]),)
    if pick("runAsNonRoot") and (uid is None or int(uid) == 0):
        raise ConfigError(
            "container has runAsNonRoot and image will run as root "
            "(set securityContext.runAsUser to a non-zero uid)"
            if uid is None
            else "container's runAsUser breaks non-root policy"
        )
    return Identity(
        uid=None if uid is None else int(uid),
        gid=None if gid is None else int(gid),
        groups=groups,
    )
