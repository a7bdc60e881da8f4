"""How WeaviateStore reaches Weaviate: the client for each kind of deployment (local, custom, cloud, embedded)
and the addresses its readiness probe checks. Pure functions of the settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from ...errors import StoreError

if TYPE_CHECKING:
    from ...config import WeaviateSettings

__all__ = ["additional_config", "connect", "endpoint", "grpc_address", "rest_url"]


def _weaviate() -> Any:
    try:
        import weaviate
    except ImportError as exc:  # pragma: no cover - weaviate-client is a runtime dependency
        raise StoreError("store.backend = 'weaviate' needs weaviate-client: pip install weaviate-client") from exc
    return weaviate


def additional_config(s: WeaviateSettings) -> Any:
    from weaviate.classes.init import AdditionalConfig, Timeout

    return AdditionalConfig(timeout=Timeout(init=s.timeout_init, query=s.timeout_query, insert=s.timeout_insert))


def endpoint(s: WeaviateSettings) -> tuple[str, int, bool]:
    """HTTP host, port and whether it is TLS."""
    if s.url:
        parsed = urlparse(s.url if "://" in s.url else f"http://{s.url}")
        secure = parsed.scheme == "https"
        return parsed.hostname or s.host, parsed.port or (443 if secure else s.port), secure
    if s.connection == "custom":
        return s.http_host or s.host, s.port, s.http_secure
    return s.host, s.port, False


def rest_url(s: WeaviateSettings) -> str:
    """Base REST URL, for readiness probes and messages."""
    if s.connection == "cloud":
        url = s.cluster_url or ""
        return (url if "://" in url else f"https://{url}").rstrip("/")
    if s.connection == "embedded":
        return f"http://127.0.0.1:{s.port}"
    host, port, secure = endpoint(s)
    return f"{'https' if secure else 'http'}://{host}:{port}"


def connect(s: WeaviateSettings, data_dir: Path | None) -> Any:
    """A connected weaviate-client for the configured kind of deployment (local, custom, cloud, embedded)."""
    weaviate = _weaviate()
    from weaviate.classes.init import Auth

    auth = Auth.api_key(s.api_key.get_secret_value()) if s.api_key is not None else None
    cfg = additional_config(s)
    if s.connection == "cloud":
        if not s.cluster_url or auth is None:
            raise StoreError("store.weaviate.connection = 'cloud' needs cluster_url and api_key")
        return weaviate.connect_to_weaviate_cloud(cluster_url=s.cluster_url, auth_credentials=auth,
                                                  additional_config=cfg, skip_init_checks=s.skip_init_checks)
    if s.connection == "embedded":
        from weaviate.embedded import EmbeddedOptions

        data = s.data_path or ((data_dir / "weaviate") if data_dir else None)
        options = EmbeddedOptions(
            version=s.embedded_version, port=s.port, grpc_port=s.grpc_port, hostname="127.0.0.1",
            binary_path=str(s.binary_path) if s.binary_path else EmbeddedOptions.binary_path,
            persistence_data_path=str(data) if data else EmbeddedOptions.persistence_data_path,
        )
        client = weaviate.WeaviateClient(embedded_options=options, additional_config=cfg,
                                         skip_init_checks=s.skip_init_checks)
        try:
            client.connect()
        except BaseException:
            client.close()
            raise
        return client
    host, port, secure = endpoint(s)
    if s.connection == "custom" or secure:
        return weaviate.connect_to_custom(
            http_host=host, http_port=port, http_secure=secure, grpc_host=s.grpc_host or host,
            grpc_port=s.grpc_port, grpc_secure=s.grpc_secure or secure, additional_config=cfg,
            auth_credentials=auth, skip_init_checks=s.skip_init_checks)
    return weaviate.connect_to_local(host=host, port=port, grpc_port=s.grpc_port, additional_config=cfg,
                                     auth_credentials=auth, skip_init_checks=s.skip_init_checks)


def grpc_address(s: WeaviateSettings) -> tuple[str, int] | None:
    """Where queries and writes go (None: the client derives it, as for cloud)."""
    if s.connection == "cloud":
        return None  # the client derives the gRPC host itself
    if s.connection == "embedded":
        return "127.0.0.1", s.grpc_port
    return s.grpc_host or endpoint(s)[0], s.grpc_port
