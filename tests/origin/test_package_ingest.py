from __future__ import annotations

import shutil
from pathlib import Path

import boto3
import pytest

from edgecdn.cli import main
from origin.ingest import PLAYLIST_CACHE, SEGMENT_CACHE, ingest, ingest_with_progress, s3_etag
from origin.package import PackageError, parse_ladder


def _client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def _extinf(playlist: Path) -> list[str]:
    return [ln for ln in playlist.read_text().splitlines() if ln.startswith("#EXTINF")]


def test_package_writes_ladder_with_aligned_segments(packaged_title: Path) -> None:
    master = (packaged_title / "master.m3u8").read_text()
    names = ["240p", "180p", "144p"]
    for n in names:
        assert f"{n}/index.m3u8" in master
    assert master.count("#EXT-X-STREAM-INF") == 3
    durations = [_extinf(packaged_title / n / "index.m3u8") for n in names]
    # 6 s at 4 s segments: 4 + 2, identical in every rendition (forced key frames)
    assert durations[0] == durations[1] == durations[2]
    assert len(durations[0]) == 2 and durations[0][0].startswith("#EXTINF:4.0")
    for n in names:
        segs = sorted((packaged_title / n).glob("seg_*.ts"))
        assert [s.name for s in segs] == ["seg_00000.ts", "seg_00001.ts"]
        assert segs[0].read_bytes()[:1] == b"\x47"  # MPEG-TS sync byte


def test_package_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(PackageError):
        parse_ladder("720p:3M")
    with pytest.raises(PackageError):
        parse_ladder("721:3M")
    bogus = tmp_path / "x.mp4"
    bogus.write_bytes(b"not a video")
    assert main(["origin", "package", str(bogus), "--title", "T", "--out",
                 str(tmp_path / "o")]) == 2
    assert main(["origin", "package", str(bogus), "--title", "../x", "--out",
                 str(tmp_path / "o")]) == 2


def test_ingest_sets_types_and_rerun_skips_everything(packaged_title: Path, s3_endpoint: str,
                                                      s3_bucket: str, capsys) -> None:
    rc = main(["origin", "ingest", str(packaged_title), "--title", "T1",
               "--origin", f"s3://{s3_bucket}/pfx", "--endpoint-url", s3_endpoint])
    assert rc == 0
    s3 = _client(s3_endpoint)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    local = {f"pfx/titles/T1/{p.relative_to(packaged_title).as_posix()}"
             for p in packaged_title.rglob("*") if p.is_file()}
    assert keys == local and len(keys) == 1 + 3 * 3
    master = s3.head_object(Bucket=s3_bucket, Key="pfx/titles/T1/master.m3u8")
    assert master["ContentType"] == "application/vnd.apple.mpegurl"
    assert master["CacheControl"] == PLAYLIST_CACHE
    seg = s3.head_object(Bucket=s3_bucket, Key="pfx/titles/T1/240p/seg_00001.ts")
    assert seg["ContentType"] == "video/mp2t"
    assert seg["CacheControl"] == SEGMENT_CACHE
    body = s3.get_object(Bucket=s3_bucket, Key="pfx/titles/T1/240p/seg_00001.ts")["Body"].read()
    assert body == (packaged_title / "240p" / "seg_00001.ts").read_bytes()

    again = ingest(packaged_title, "T1", s3, s3_bucket, "pfx/")
    assert again.uploaded == [] and len(again.skipped) == len(local)


def test_ingest_resumes_only_what_differs(packaged_title: Path, tmp_path: Path,
                                          s3_endpoint: str, s3_bucket: str) -> None:
    work = tmp_path / "T2"
    shutil.copytree(packaged_title, work)
    s3 = _client(s3_endpoint)
    first = ingest(work, "T2", s3, s3_bucket, "")
    assert first.skipped == []
    # an interrupted earlier upload: one object missing, one with the wrong bytes
    s3.delete_object(Bucket=s3_bucket, Key="titles/T2/180p/seg_00000.ts")
    seg = work / "144p" / "seg_00001.ts"
    seg.write_bytes(seg.read_bytes()[:-188] + b"\x47" * 188)  # same size, new content
    res = ingest(work, "T2", s3, s3_bucket, "")
    assert sorted(res.uploaded) == ["titles/T2/144p/seg_00001.ts", "titles/T2/180p/seg_00000.ts"]


def test_ingest_dash_types_and_multipart_etag(tmp_path: Path, s3_endpoint: str,
                                              s3_bucket: str) -> None:
    d = tmp_path / "dash"
    (d / "v1").mkdir(parents=True)
    (d / "manifest.mpd").write_text("<MPD/>")
    (d / "v1" / "init.mp4").write_bytes(b"\0" * 1000)
    (d / "v1" / "chunk_00001.m4s").write_bytes(b"\1" * 1000)
    big = d / "v1" / "full.mp4"
    big.write_bytes(bytes(range(256)) * (11 * 4096))  # 11 MiB: 3 parts of 5 MiB
    s3 = _client(s3_endpoint)
    part = 5 * 1024 * 1024
    res = ingest(d, "D1", s3, s3_bucket, "", part_size=part)
    assert len(res.uploaded) == 4
    head = s3.head_object(Bucket=s3_bucket, Key="titles/D1/v1/full.mp4")
    assert head["ETag"].strip('"') == s3_etag(big, part) and s3_etag(big, part).endswith("-3")
    types = {k: s3.head_object(Bucket=s3_bucket, Key=f"titles/D1/{k}")["ContentType"]
             for k in ("manifest.mpd", "v1/init.mp4", "v1/chunk_00001.m4s")}
    assert types == {"manifest.mpd": "application/dash+xml", "v1/init.mp4": "video/mp4",
                     "v1/chunk_00001.m4s": "video/iso.segment"}
    assert ingest(d, "D1", s3, s3_bucket, "", part_size=part).uploaded == []
    (d / "v1" / "chunk_00002.m4s").write_bytes(b"\2" * 10)
    shown = ingest_with_progress(d, "D1", s3, s3_bucket, "", show=True)  # the rich bar path
    assert shown.uploaded == ["titles/D1/v1/chunk_00002.m4s"]  # 5 MiB parts still recognised


def test_ingest_cli_reports_bad_arguments(tmp_path: Path, s3_endpoint: str) -> None:
    assert main(["origin", "ingest", str(tmp_path / "missing"), "--title", "T",
                 "--bucket", "b", "--endpoint-url", s3_endpoint]) == 2
    assert main(["origin", "ingest", str(tmp_path), "--title", "T"]) == 2
