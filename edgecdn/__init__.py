"""edgecdn: CDN edge caching with traffic steering for video."""

__version__ = "0.1.0"
