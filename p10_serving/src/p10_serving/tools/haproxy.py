"""HAProxy in front of run_serve replicas, as the replica test and the bench run it (docker/haproxy.cfg is the
compose stack's copy): round robin, each replica health-checked on its readiness route, a connection that a dead
replica refuses sent to another one (the request body is buffered so that it can be)."""

from __future__ import annotations

import shutil

TEMPLATE = """global
    maxconn 4000
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    option http-buffer-request
    retries 2
    option redispatch
    retry-on conn-failure empty-response
frontend dlm
    bind {bind}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /v2/health/ready
    http-check expect status 200
{servers}
"""


def find_haproxy() -> str | None:
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")


def haproxy_config(bind: str, replicas: dict[str, str], check: str = "inter 300ms fall 2 rise 2") -> str:
    """The configuration for HAProxy listening on `bind` (host:port) over replicas {name: host:port}."""
    servers = "\n".join(f"    server {name} {address} check {check}" for name, address in replicas.items())
    return TEMPLATE.format(bind=bind, servers=servers)
