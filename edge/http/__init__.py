"""Pure HTTP caching rules for a shared cache (RFC 9110, 9111, 9211, 5861, 8246).

No sockets, no files, no clock: every function that depends on time takes ``now``.
Headers are plain dicts with lower-case names, repeated fields joined with ", ".
Each module decides one thing and returns a value (an enum or a dataclass); the
server only dispatches on it.
"""

Headers = dict[str, str]
