"""A pod's URLs: its port names mapped to the host ports Docker bound, and the URL each one gives."""

from __future__ import annotations


def host_ports_by_name(named_ports: dict[str, int], bound: dict[int, int]) -> dict[str, int]:
    """Port name → pod port, and pod port → host port: port name → host port."""
    return {name: bound[int(pod_port)] for name, pod_port in named_ports.items() if bound.get(int(pod_port))}


def urls_for(ports: dict[str, int], protocol: str = "http") -> dict[str, str]:
    """A TCP service's https and http ports carry its own protocol, in TLS or in the clear."""
    def url(name: str, port: int) -> str:
        if name == "metrics":
            return f"http://localhost:{port}/metrics"
        if protocol == "tcp":
            return ("tls" if name == "https" else "tcp") + f"://localhost:{port}"
        return ("https" if name == "https" else "http") + f"://localhost:{port}/"
    return {name: url(name, port) for name, port in ports.items()}
