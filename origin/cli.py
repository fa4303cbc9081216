"""``edgecdn origin package|ingest``: from a video file to a title on the S3 origin."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from origin.ingest import IngestError, ingest_with_progress
from origin.package import DEFAULT_LADDER, PackageError, package, parse_ladder
from origin.s3 import origin_location, s3_client


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("origin", help="package and ingest titles into the S3 origin")
    osub = p.add_subparsers(dest="origin_command", metavar="ACTION")
    p.set_defaults(func=lambda _args: _usage(p))

    pk = osub.add_parser("package", help="video file -> HLS ladder (ffmpeg)")
    pk.add_argument("input", type=Path)
    pk.add_argument("--title", required=True)
    pk.add_argument("--out", required=True, type=Path)
    pk.add_argument("--ladder", default=DEFAULT_LADDER,
                    help=f"HEIGHT:BITRATE,... (default {DEFAULT_LADDER})")
    pk.add_argument("--segment", type=float, default=4.0, help="segment seconds (default 4)")
    pk.add_argument("--preset", default="veryfast", help="libx264 preset")
    pk.set_defaults(func=cmd_package)

    ig = osub.add_parser("ingest", help="upload a packaged title (resumable, parallel)")
    ig.add_argument("dir", type=Path)
    ig.add_argument("--title", required=True)
    ig.add_argument("--origin", help="s3://bucket[/prefix]")
    ig.add_argument("--bucket", help="bucket (instead of --origin)")
    ig.add_argument("--prefix", default="", help="key prefix with --bucket")
    ig.add_argument("--endpoint-url", help="S3-compatible endpoint (default: AWS chain)")
    ig.add_argument("--region", default=None)
    ig.add_argument("--workers", type=int, default=8)
    ig.add_argument("--no-progress", action="store_true")
    ig.set_defaults(func=cmd_ingest)


def cmd_package(args: argparse.Namespace) -> int:
    try:
        master = package(args.input, args.out, args.title, parse_ladder(args.ladder),
                         args.segment, preset=args.preset)
    except PackageError as e:
        print(f"edgecdn origin package: {e}", file=sys.stderr)
        return 2
    print(f"packaged {args.title}: {master}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    try:
        bucket, prefix = origin_location(args.origin, args.bucket, args.prefix)
        client = s3_client(args.endpoint_url, args.region, max_pool=max(10, args.workers * 2))
        res = ingest_with_progress(args.dir, args.title, client, bucket, prefix, args.workers,
                                   show=not args.no_progress and sys.stderr.isatty())
    except (ValueError, IngestError, PackageError) as e:
        print(f"edgecdn origin ingest: {e}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as e:
        print(f"edgecdn origin ingest: S3 error: {e} (rerun to resume)", file=sys.stderr)
        return 1
    print(f"ingested {args.title} to s3://{bucket}/{prefix}titles/{args.title}/: "
          f"{len(res.uploaded)} uploaded ({res.bytes_uploaded} B), "
          f"{len(res.skipped)} already there ({res.bytes_skipped} B)")
    return 0


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2
