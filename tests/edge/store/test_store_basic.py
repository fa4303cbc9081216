from __future__ import annotations

import os

import pytest

from edge.store import ObjectMeta

from .conftest import CS, chunk_files, fill, meta_for, payload, read_all, read_chunk


def test_write_commit_read_back_across_chunks(make_store, tmp_path):
    s = make_store(mem=8 * CS)
    m = meta_for("/titles/T/720p/seg_00001.ts", 2 * CS + 1234)
    fill(s, m)
    assert s.chunk_count(m) == 3
    assert s.chunk_bounds(m, 2) == (2 * CS, 2 * CS + 1234)
    assert read_all(s, m) == payload(m.key, m.size)
    ref = s.get_chunk(m, 1)
    assert ref is not None and ref.data is not None  # promoted to memory on commit
    fd = ref.open_fd()  # the disk copy is complete too
    try:
        assert os.pread(fd, CS + 1, 0) == payload(m.key, m.size)[CS:2 * CS]
    finally:
        os.close(fd)
    with pytest.raises(IndexError):
        s.chunk_bounds(m, 3)
    assert s.get_meta(m.key) == m
    assert s.stats()["disk"].used_bytes == m.size
    assert s.stats()["memory"].used_bytes == m.size
    s.check()


def test_short_write_never_becomes_visible(make_store, tmp_path):
    s = make_store()
    m = meta_for("/short", CS)
    s.put_meta(m)
    w = s.new_writer(m, 0)
    w.write(b"x" * (CS - 1))
    assert w.commit() is False
    assert s.get_chunk(m, 0) is None
    assert chunk_files(tmp_path / "cache") == {}
    assert os.listdir(tmp_path / "cache" / "tmp") == []


def test_overlong_write_is_refused_and_aborted(make_store, tmp_path):
    s = make_store()
    m = meta_for("/long", 100)
    s.put_meta(m)
    w = s.new_writer(m, 0)
    with pytest.raises(ValueError):
        w.write(b"x" * 101)
    assert w.commit() is False
    assert os.listdir(tmp_path / "cache" / "tmp") == []


def test_aborted_writer_leaves_nothing(make_store, tmp_path):
    s = make_store()
    m = meta_for("/abort", 100)
    s.put_meta(m)
    with s.new_writer(m, 0) as w:
        w.write(b"x" * 50)
    assert w.commit() is False
    assert os.listdir(tmp_path / "cache" / "tmp") == []
    assert s.get_chunk(m, 0) is None


def test_version_change_makes_old_chunks_unreachable_and_removes_them(make_store, tmp_path):
    s = make_store(mem=8 * CS)
    old = meta_for("/v", 2 * CS, etag='"a"')
    fill(s, old)
    new = meta_for("/v", 2 * CS, etag='"b"')
    assert new.version != old.version
    s.put_meta(new)
    assert s.get_meta("/v") == new
    assert s.get_chunk(new, 0) is None
    assert s.get_chunk(old, 0) is None  # the stale meta a slow request holds finds nothing
    s.flush()
    assert chunk_files(tmp_path / "cache") == {}
    assert s.stats()["disk"].used_bytes == 0 and s.stats()["memory"].used_bytes == 0
    fill(s, new, b"n" * new.size)
    assert read_all(s, new) == b"n" * new.size
    s.check()


def test_commit_for_a_replaced_version_is_refused(make_store, tmp_path):
    s = make_store()
    old = meta_for("/race", 100, etag='"a"')
    s.put_meta(old)
    w = s.new_writer(old, 0)
    w.write(b"o" * 100)
    s.put_meta(meta_for("/race", 100, etag='"b"'))
    assert w.commit() is False
    s.flush()
    assert chunk_files(tmp_path / "cache") == {}


def test_same_version_put_meta_keeps_chunks(make_store):
    s = make_store()
    m = meta_for("/reval", CS, response_time=1.0)
    fill(s, m)
    m2 = m.replace(headers={"cache-control": "max-age=60"}, response_time=99.0)
    assert m2.version == m.version
    s.put_meta(m2)
    s.flush()
    assert s.get_meta("/reval").response_time == 99.0
    assert read_all(s, m2) == payload(m.key, m.size)


def test_index_hit_does_not_touch_the_disk(make_store, tmp_path):
    s = make_store()  # no memory tier: the ref points at the file
    m = meta_for("/nostat", CS)
    fill(s, m)
    ref = s.get_chunk(m, 0)
    os.unlink(ref.path)  # behind the store's back
    again = s.get_chunk(m, 0)
    assert again is ref  # answered from the index, no stat
    with pytest.raises(FileNotFoundError):
        again.open_fd()
    s.chunk_missing(m, 0)  # what the server does then
    assert s.get_chunk(m, 0) is None
    assert s.stats()["disk"].used_bytes == 0
    s.check()


def test_lookup_missing_the_index_checks_disk(make_store, tmp_path):
    a = make_store()
    b = make_store()  # same directory, loader never started
    m = meta_for("/other-worker", CS + 5)
    fill(a, m)
    assert b.get_meta(m.key) == m
    assert read_all(b, m) == payload(m.key, m.size)
    assert b.get_meta("/never") is None


def test_empty_object_has_no_chunks(make_store):
    s = make_store()
    m = meta_for("/empty", 0)
    s.put_meta(m)
    assert s.chunk_count(m) == 0
    assert s.get_meta("/empty") == m


def test_meta_json_round_trip_and_version():
    m = ObjectMeta("/k?a=1", 10, '"e"', "Tue, 01 Jan 2030 00:00:00 GMT", "text/plain", 200,
                   {"etag": '"e"'}, 1.5, 2.5, {"accept-encoding": "gzip"}, True)
    back = ObjectMeta.from_json(m.to_json())
    assert back == m and back.version == m.version
    assert m.replace(etag='"f"').version != m.version
    assert m.replace(size=11).version != m.version
    # a strong ETag names the bytes: its Last-Modified does not change the version; beside a
    # weak ETag or none, Last-Modified does
    assert m.replace(last_modified=None).version == m.version
    weak = m.replace(etag='W/"e"')
    assert weak.replace(last_modified=None).version != weak.version
    assert m.replace(etag=None).replace(last_modified=None).version != m.replace(etag=None).version
    assert m.replace(etag=None, last_modified=None).version != m.replace(etag="null").version
    for bad in (b"", b"{", b"[]", b'{"format":1}', b'{"format":1,"key":"/k","size":-1}',
                b'{"format":1,"key":"/k","size":"1"}', b'{"format":2,"key":"/k","size":1}'):
        with pytest.raises(ValueError):
            ObjectMeta.from_json(bad)


def test_meta_stored_response_bridge():
    model = pytest.importorskip("edge.http.model")
    st = model.StoredResponse(200, {"etag": '"x"', "content-type": "video/mp4",
                                    "last-modified": "Tue, 01 Jan 2030 00:00:00 GMT"}, 1.0, 2.0)
    m = ObjectMeta.from_stored("/s", 5, st, vary={"accept": "*/*"})
    assert (m.etag, m.content_type, m.vary) == ('"x"', "video/mp4", {"accept": "*/*"})
    assert m.stored_response() == st
    m2 = m.replace(soft_purged=True).with_stored(model.StoredResponse(200, st.headers, 3.0, 4.0))
    assert not m2.soft_purged and m2.response_time == 4.0 and m2.version == m.version


def test_chunk_size_change_starts_a_fresh_tree(make_store, tmp_path):
    a = make_store(cs=CS)
    m = meta_for("/cs", 3 * CS)
    fill(a, m)
    a.close()
    b = make_store(cs=CS // 2)
    assert b.get_meta("/cs") is None  # never misread chunks cut at other boundaries
    b.start_loader()
    b.rebuilt.wait(10)
    b._loader.join(10)  # the old tree goes once the index is rebuilt
    assert [p.name for p in (tmp_path / "cache").glob("v1-*")] == [f"v1-{CS // 2}"]


def test_read_chunk_helper_sees_exact_length(make_store):
    s = make_store()
    m = meta_for("/exact", CS + 7)
    fill(s, m)
    assert len(read_chunk(s, m, 1)) == 7
