"""The Steering service object without sockets: answer format, memos, decision log."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from contracts.steer import SteerResponse
from steering.service import BadRequest, Steering, Unavailable
from steering.settings import SteeringSettings
from tests.steering.conftest import make_fleet


def service(mmdb: Path, cf: Path | None = None, **kw) -> Steering:
    fleet = make_fleet(steering={"geoip_db": str(mmdb), **kw}, cf_key_path=cf)
    st = Steering(fleet, SteeringSettings.from_dict(fleet.steering),
                  rnd=random.Random(1).random)
    for n in st.edges:
        st.on_probe(n, ok=True, load=0.1, now=0)
    return st


@pytest.mark.parametrize("ip", ["81.2.69.160", "198.51.100.7", "2001:db8:2::1", "10.0.0.1"])
def test_answer_is_exactly_a_steer_response(mmdb_path: Path, cf_key, ip: str) -> None:
    st = service(mmdb_path, cf_key[0])
    doc = json.loads(st.decide_json("/titles/t%20x/master.m3u8", ip, 1000.0, "param"))
    assert SteerResponse.from_dict(doc).to_dict() == doc
    assert doc["path"] == "/titles/t x/master.m3u8"
    assert all("/titles/t%20x/master.m3u8?" in u for u in doc["urls"])


def all_down(st: Steering) -> None:
    for n in st.edges:
        st.on_probe(n, ok=False, load=0, now=1)
        st.on_probe(n, ok=False, load=0, now=2)


def test_nothing_up_without_cloudfront_is_unavailable_not_an_empty_answer(
        mmdb_path: Path) -> None:
    st = service(mmdb_path)
    all_down(st)
    with pytest.raises(Unavailable) as e:
        st.decide_json("/x.ts", "81.2.69.160", 3.0)
    assert e.value.status == 503 and "no edge is up" in e.value.reason
    assert st.first_url("/x.ts", "81.2.69.160", 3.0) == ""


def test_nothing_up_with_cloudfront_is_cloudfront_only(mmdb_path: Path, cf_key) -> None:
    st = service(mmdb_path, cf_key[0])
    all_down(st)
    doc = json.loads(st.decide_json("/x.ts", "81.2.69.160", 3.0))
    assert [t["kind"] for t in doc["targets"]] == ["cloudfront"]
    assert doc["reason"]["fallback"] is True and doc["reason"]["site"] == "cloudfront"
    assert SteerResponse.from_dict(doc).to_dict() == doc


def test_first_probes_failing_do_not_evacuate_and_edges_serve_as_they_come_up(
        mmdb_path: Path) -> None:
    """Edges still starting when steering starts: no automatic evacuation, and each edge
    serves at full share as soon as it is up (no ramp from 0)."""
    fleet = make_fleet(steering={"geoip_db": str(mmdb_path), "ramp_seconds": 30})
    st = Steering(fleet, SteeringSettings.from_dict(fleet.steering),
                  rnd=random.Random(1).random)
    assert st.healthy_fractions() == {}  # nothing probed: nothing known, nothing evacuated
    st.capacity_started = True
    for n in st.edges:
        st.on_probe(n, ok=False, load=0, now=100)
    assert st.tick(100) == [] and set(st.view.keep.values()) == {1.0}
    for t in (101, 102):
        for n in st.edges:
            st.on_probe(n, ok=True, load=0.1, now=t)
    assert st.tick(102) == [] and set(st.view.keep.values()) == {1.0}
    doc = st.decide("/titles/a/master.m3u8", "81.2.69.160", 102.1)
    assert doc["targets"][0]["site"] == "lon" and doc["reason"]["choice"] == "nearest"
    assert all(r["armed"] for r in st.regions_doc(102.1).values())


def test_bad_path_is_bad_request(mmdb_path: Path) -> None:
    with pytest.raises(BadRequest) as e:
        service(mmdb_path).decide_json("/a/../b", "81.2.69.160", 0)
    assert e.value.status == 400


def test_view_generation_moves_only_on_serving_set_or_load_band(mmdb_path: Path) -> None:
    st = service(mmdb_path)
    g, og = st.view.gen, st.view.order_gen
    st.on_probe("lon-1", ok=True, load=0.11, now=5)  # same band
    st.tick(5)
    assert (st.view.gen, st.view.order_gen) == (g, og)
    st.on_probe("lon-1", ok=True, load=0.5, now=6)  # new band: site order may change
    st.tick(6)
    assert (st.view.gen, st.view.order_gen) == (g, og + 1)
    st.on_probe("lon-1", ok=True, load=0.3, now=7)  # re-sorted at most every REORDER_S
    st.tick(7)
    assert st.view.order_gen == og + 1 and st.view.edge_load["lon-1"] == 0.3
    st.tick(11.5)
    assert st.view.order_gen == og + 2
    for t in (7, 8):
        st.on_probe("lon-1", ok=False, load=0, now=t)
    assert st.view.gen == g + 1 and "lon-1" not in st.view.edge_load


def test_decision_log_lines_are_json(mmdb_path: Path, tmp_path: Path) -> None:
    log = tmp_path / "d.jsonl"
    st = service(mmdb_path, decision_log=str(log))
    st.decide_json('/titles/q"uote/master.m3u8', "81.2.69.160", 1.0)
    st.decide_json("/titles/b/master.m3u8", "2001:db8:2::1", 2.0)
    st.tick(3.0)
    st.log.flush(wait=True)  # written by the log's thread
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["path"] for r in recs] == ['/titles/q"uote/master.m3u8', "/titles/b/master.m3u8"]
    assert recs[0]["site"] == "lon" and recs[1]["site"] == "nyc"
    assert recs[0]["edges"][0].startswith("lon-") and recs[0]["cloudfront"] is False


def test_metrics_render_is_valid_exposition_with_every_edge_state_and_load(
        mmdb_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    st = service(mmdb_path)
    st.on_probe("lon-1", ok=True, load=float("inf"), now=1)  # draining
    for t in (1, 2):
        st.on_probe("nyc-2", ok=False, load=0, now=t)
    st.decide_json("/titles/a/master.m3u8", "81.2.69.160", 3.0)
    fams = {f.name: f for f in text_string_to_metric_families(st.metrics.render().decode())}
    states = {(s.labels["edge"], s.labels["state"]): s.value
              for s in fams["edgecdn_steer_edge_state"].samples}
    assert len(states) == len(st.edges) * 5
    assert states[("nyc-2", "down")] == 1 and states[("nyc-2", "up")] == 0
    assert states[("lon-1", "shedding")] == 1
    loads = {s.labels["edge"]: s.value for s in fams["edgecdn_steer_edge_load"].samples}
    assert loads["lon-1"] == float("inf") and loads["fra-1"] == pytest.approx(0.1)
    probes = {s.labels["region"] for s in fams["edgecdn_steer_probe_seconds"].samples}
    assert probes == {"eu-west", "eu-central", "us-east"}
    assert fams["edgecdn_steer_decisions"].samples[0].labels["site"] == "lon"
