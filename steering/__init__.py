"""Steering service: which edges (and, last, CloudFront) a player should fetch a title from.

Pure cores (no I/O, ``now`` passed in): ``geo`` (distance, locations), ``health`` (per-edge
state machine as a transition table), ``shedding`` (NS1-style watermarks), ``traffic``
(region weights and evacuation ramps), ``ranking`` (the decision), ``clientaddr`` (which
address a decision is for). Shells: ``geoip`` (mmdb), ``signing`` (edge HMAC tokens,
CloudFront RSA URLs), ``probes``/``probe_client`` (GET /healthz), ``service`` (state and
decisions), ``http_api``/``http_server`` (lean httptools HTTP), ``dns_server`` (UDP/TCP,
ECS), ``server`` and ``cli`` (``edgecdn steer``).

Edge URLs carry ``?token=`` (``contracts.tokens``: HMAC-SHA256 with the fleet's
``[signing]`` active secret, acl = the title folder ``/titles/T/``); an edge verifies with
every secret in ``[signing.secrets]``. Never imports ``edge``: edges are reached over HTTP.
"""
