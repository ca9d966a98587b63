"""Shared fixtures: the conformance kit's (a moto S3 server, ``store`` on local files and S3, a fault proxy),
imported here so every test module sees them."""

from dataplug.testing.fixtures import (  # noqa: F401 - fixtures are found by name
    REGION,
    Store,
    fault_proxy,
    latency_bed,
    local_store,
    make_bucket,
    moto_endpoint,
    s3_options,
    s3_store,
    store,
)
