"""The edge's boto3 S3 clients (presigning origin, fill manifests, log shipping), made one way:
the configured region, else AWS_DEFAULT_REGION, else us-east-1; credentials from the config or
the standard AWS chain; certificates of an https endpoint checked against origin.ca_file."""

from __future__ import annotations

import os
from typing import Any


def s3_client(endpoint_url: str | None, region: str | None, *, ca_file: str | None = None,
              config: Any = None, access_key_id: str | None = None,
              secret_access_key: str | None = None) -> Any:
    """ca_file None: the system store (or AWS_CA_BUNDLE, as boto3 reads it)."""
    import boto3

    session = boto3.session.Session(
        aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key,
        region_name=region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    return session.client("s3", endpoint_url=endpoint_url, config=config, verify=ca_file)
