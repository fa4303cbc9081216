"""Contracts shared by every edgecdn service.

This package imports none of the services (edge, steering, origin, bench): it is the
only thing they have in common, so a service on one machine and a service on another
agree on sizes, keys, tokens, reports and hashing without importing each other.
"""
