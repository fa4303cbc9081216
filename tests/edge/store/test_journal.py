from __future__ import annotations

from edge.store.journal import Journal


def test_changes_of_others_are_read_once_and_own_are_skipped(tmp_path):
    p = str(tmp_path / "journal.log")
    a, b = Journal(p, "a"), Journal(p, "b")
    a.append("/x")
    b.append("/mine")
    a.append("/y\n#odd")
    assert b.read_others() == ["/x", "/y\n#odd"]
    assert b.read_others() == []
    assert a.read_others() == ["/mine"]
    with open(p, "ab") as f:  # a torn line left by a writer killed mid-append
        f.write(b'["c","/to')
    assert b.read_others() == []
    a.append("/next")  # still readable after the torn one
    assert b.read_others() == ["/next"]
    a.close()
    b.close()


def test_big_journal_is_truncated_only_when_nobody_else_has_it_open(tmp_path):
    p = str(tmp_path / "journal.log")
    a = Journal(p, "a", max_bytes=100)
    for i in range(10):
        a.append(f"/k{i}")
    b = Journal(p, "b", max_bytes=100)  # a still has it open: kept
    assert b.read_others() == []  # starts at the end
    a.append("/after")
    assert b.read_others() == ["/after"]
    a.close()
    b.close()
    c = Journal(p, "c", max_bytes=100)  # alone now: truncated
    assert (tmp_path / "journal.log").stat().st_size == 0
    d = Journal(p, "d", max_bytes=100)
    c.append("/new")
    assert d.read_others() == ["/new"]
    c.close()
    d.close()
