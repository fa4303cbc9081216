"""One simulated video player: steer, playlist, ABR, segments with failover, a playback buffer.

Rules of this file:
- Everything random is drawn in ``plan_session`` from a seed-derived RNG, never during play,
  so a seed fixes who watches what from where; only timing (and what timing drives: ABR
  throughput, hit/miss races) may differ between runs.
- The buffer and ABR are pure (``PlaybackBuffer``, ``choose_variant``); ``Player`` is the I/O
  shell that feeds them wall-clock times.
- A player tries the steering URLs in order and sticks to the one that worked, like an Open
  Connect client. When every URL failed it asks steering once more, then gives up the play.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import aiohttp

from bench.player_hls import PlaylistError, Variant, parse_master, parse_media, resolve
from bench.playerstats import RequestSample, RunStats, SessionResult, parse_cache_status
from contracts.steer import SteerResponse, SteerTarget

# -- the deterministic plan -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientPrefix:
    prefix: str  # "10.1.0.0/16" or an IPv6 prefix
    weight: float = 1.0
    label: str = ""


@dataclass(frozen=True, slots=True)
class SessionPlan:
    player: int
    index: int
    client_ip: str
    client_label: str
    title: str
    abandon: bool
    watch_fraction: float  # of the title's segments (1.0 when not abandoning)

    def watch_segments(self, total: int) -> int:
        if not self.abandon:
            return total
        return max(1, min(total, math.ceil(self.watch_fraction * total)))


@dataclass(frozen=True, slots=True)
class Workload:
    """What players are drawn from: client prefixes, titles by Zipf rank, abandonment."""

    clients: tuple[ClientPrefix, ...]
    titles: tuple[str, ...]  # most popular first
    zipf_s: float = 1.0
    abandon_p: float = 0.4  # chance a viewer leaves early
    abandon_mean: float = 0.25  # mean watched fraction of those who leave

    def title_weights(self) -> list[float]:
        return [1.0 / (k + 1) ** self.zipf_s for k in range(len(self.titles))]


def plan_session(seed: int, player: int, index: int, w: Workload) -> SessionPlan:
    """The index-th session of a player: a pure function of (seed, player, index, workload)."""
    if not w.clients or not w.titles:
        raise ValueError("workload needs client prefixes and titles")
    rng = random.Random(f"edgecdn-players:{seed}:{player}:{index}")
    c = rng.choices(w.clients, weights=[c.weight for c in w.clients])[0]
    net = ipaddress.ip_network(c.prefix, strict=False)
    if net.num_addresses > 2 and net.version == 4:
        off = rng.randrange(1, net.num_addresses - 1)
    else:
        off = rng.randrange(net.num_addresses)
    ip = str(net.network_address + off)
    title = rng.choices(w.titles, weights=w.title_weights())[0]
    abandon = rng.random() < w.abandon_p
    frac = min(1.0, rng.expovariate(1.0 / w.abandon_mean)) if abandon else 1.0
    return SessionPlan(player, index, ip, c.label or c.prefix, title, abandon, round(frac, 6))


# -- pure playback model ----------------------------------------------------------------


class PlaybackBuffer:
    """Media seconds buffered; playback drains ``speed`` media seconds per wall second.

    Playback starts with the first segment. Running dry is a stall (rebuffer) that lasts
    until the next segment arrives.
    """

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.level = 0.0
        self.t: float | None = None
        self.playing = False
        self.stall_start: float | None = None
        self.rebuffers = 0
        self.rebuffer_time = 0.0

    def advance(self, now: float) -> None:
        if self.t is None or not self.playing:
            self.t = now
            return
        consumed = (now - self.t) * self.speed
        self.t = now
        if self.stall_start is not None:
            return
        if consumed >= self.level:
            self.stall_start = now - (consumed - self.level) / self.speed
            self.rebuffers += 1
            self.level = 0.0
        else:
            self.level -= consumed

    def add(self, now: float, duration: float) -> None:
        self.advance(now)
        if self.stall_start is not None:
            self.rebuffer_time += now - self.stall_start
            self.stall_start = None
        self.level += duration
        self.playing = True

    def wait_for_room(self, now: float, max_level: float) -> float:
        """Wall seconds until the buffer holds no more than max_level."""
        self.advance(now)
        return max(0.0, (self.level - max_level) / self.speed)

    def close(self, now: float) -> None:
        """End of play (failed or cut): an open stall ends here."""
        if self.stall_start is not None:
            self.rebuffer_time += now - self.stall_start
            self.stall_start = None


def choose_variant(variants: Sequence[Variant], est_bps: float | None, buffer_s: float,
                   current: int, safety: float = 0.8, low_buffer_s: float = 8.0) -> int:
    """Highest rendition under safety x measured throughput; no step up on a thin buffer."""
    if est_bps is None or not variants:
        return current
    best = 0
    for i, v in enumerate(variants):
        if v.bandwidth <= est_bps * safety:
            best = i
    if best > current and buffer_s < low_buffer_s:
        return current
    return best


# -- the I/O shell ----------------------------------------------------------------------


_HASHER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="md5")


async def _md5_hex(parts: list[bytes]) -> str:
    """MD5 of a body; big ones in a thread (hashlib drops the GIL), so checking every byte
    runs beside the event loop instead of on it."""
    def run() -> str:
        h = hashlib.md5(usedforsecurity=False)
        for p in parts:
            h.update(p)
        return h.hexdigest()

    if sum(len(p) for p in parts) < 256 * 1024:
        return run()
    return await asyncio.get_running_loop().run_in_executor(_HASHER, run)


class PlayFailed(Exception):
    pass


@dataclass(slots=True)
class PlayerConfig:
    speed: float = 1.0
    max_buffer_s: float = 30.0
    connect_timeout: float = 1.0
    request_timeout: float = 4.0  # whole request; a paused edge costs this much once
    abr_safety: float = 0.8
    chunk: int = 256 * 1024


Expected = Callable[[str], "tuple[int, str] | None"]  # path -> (size, md5 hex) or unknown


@dataclass(slots=True)
class PlayerContext:
    """What every player shares: HTTP pool, stats, steering, checksums and the run clock."""

    http: aiohttp.ClientSession
    stats: RunStats
    steer: Callable[[str, str], Awaitable[SteerResponse]]
    expected: Expected
    cfg: PlayerConfig
    now: Callable[[], float]  # seconds since run start
    deadline: float  # run time at which players stop fetching
    cloudfront_base: str = ""  # "http://127.0.0.1:9000": where CloudFront URLs really go
    throughput: dict[int, float] = field(default_factory=dict)  # player -> estimate bit/s


@dataclass(slots=True)
class _Target:
    t: SteerTarget
    base: str  # scheme://netloc
    query: str

    @classmethod
    def of(cls, t: SteerTarget, cloudfront_base: str) -> _Target:
        u = urlsplit(t.url)
        base = f"{u.scheme}://{u.netloc}"
        if t.kind == "cloudfront" and cloudfront_base:
            base = cloudfront_base.rstrip("/")
        return cls(t, base, u.query)

    def url(self, path: str) -> str:
        q = f"?{self.query}" if self.query else ""
        return f"{self.base}{quote(path)}{q}"

    @property
    def source(self) -> str:
        return "cloudfront" if self.t.kind == "cloudfront" else (self.t.edge or self.base)


class Player:
    """Plays one session; ``play()`` never raises, it returns the session's result."""

    def __init__(self, plan: SessionPlan, ctx: PlayerContext) -> None:
        self.plan = plan
        self.ctx = ctx
        self.targets: list[_Target] = []
        self.sticky = 0
        self.res = SessionResult(plan.player, plan.index, plan.title, plan.client_ip, ok=True)

    @property
    def master_path(self) -> str:
        return f"/titles/{self.plan.title}/master.m3u8"

    async def play(self) -> SessionResult:
        ctx, res = self.ctx, self.res
        t0 = ctx.now()
        buf = PlaybackBuffer(ctx.cfg.speed)
        try:
            await self._steer()
            master_text = (await self._fetch(self.master_path, "master", True))[1].decode()
            variants = parse_master(master_text)
            if not variants:  # a bare media playlist: one rendition
                variants = [Variant(self.master_path, 0)]
            playlists: dict[int, list[tuple[str, float]]] = {}

            async def playlist(i: int) -> list[tuple[str, float]]:
                if i not in playlists:
                    p = resolve(self.master_path, variants[i].uri)
                    text = (await self._fetch(p, "playlist", True))[1].decode()
                    playlists[i] = [(resolve(p, s.uri), s.duration) for s in parse_media(text)]
                return playlists[i]

            cur = choose_variant(variants, ctx.throughput.get(self.plan.player), 0.0, 0,
                                 ctx.cfg.abr_safety, low_buffer_s=0.0)
            segs = await playlist(cur)
            n = self.plan.watch_segments(len(segs))
            res.planned_segments = n
            for i in range(n):
                wait = buf.wait_for_room(ctx.now(), ctx.cfg.max_buffer_s)
                if wait > 0:
                    await asyncio.sleep(min(wait, max(0.0, ctx.deadline - ctx.now())))
                if ctx.now() >= ctx.deadline:
                    res.cut = True
                    break
                nxt = choose_variant(variants, ctx.throughput.get(self.plan.player),
                                     buf.level, cur, ctx.cfg.abr_safety)
                if nxt != cur:
                    try:
                        nsegs = await playlist(nxt)
                        if len(nsegs) > i:
                            cur = nxt
                    except PlayFailed:
                        pass
                path, dur = (await playlist(cur))[i]
                t_req = ctx.now()
                nbytes = (await self._fetch(path, "segment"))[0]
                took = max(ctx.now() - t_req, 1e-4)
                est = nbytes * 8 / took
                old = ctx.throughput.get(self.plan.player)
                ctx.throughput[self.plan.player] = est if old is None else 0.7 * old + 0.3 * est
                buf.add(ctx.now(), dur)
                if res.startup is None:
                    res.startup = ctx.now() - t0
                res.segments += 1
                res.renditions.append(path.rsplit("/", 2)[-2] if path.count("/") >= 2 else "")
            else:
                res.abandoned = self.plan.abandon
                drain = min(buf.level / ctx.cfg.speed, max(0.0, ctx.deadline - ctx.now()))
                if drain > 0:  # the viewer watches what is buffered; running out is the end
                    await asyncio.sleep(drain)
        except PlayFailed as e:
            res.ok = False
            res.reason = str(e)
        except PlaylistError as e:
            res.ok = False
            res.reason = f"bad playlist: {e}"
        buf.close(ctx.now())
        res.rebuffers, res.rebuffer_time = buf.rebuffers, buf.rebuffer_time
        return res

    async def _steer(self) -> None:
        """Ask steering, retrying a few times like a player would (errors, empty answers)."""
        last = ""
        for attempt in range(3):
            try:
                r = await self.ctx.steer(self.master_path, self.plan.client_ip)
                if r.targets:
                    self.targets = [_Target.of(t, self.ctx.cloudfront_base) for t in r.targets]
                    self.sticky = 0
                    return
                last = "no URLs"
            except (TimeoutError, aiohttp.ClientError, ValueError, KeyError) as e:
                last = type(e).__name__
            await asyncio.sleep(0.2 * (attempt + 1))
        if last == "no URLs":
            raise PlayFailed("steering returned no URLs")
        raise PlayFailed(f"steering unavailable ({last})")

    async def _fetch(self, path: str, kind: str, keep: bool = False) -> tuple[int, bytes]:
        """(size, body if keep) of path from the first target serving it whole and intact."""
        for round_ in range(2):
            n = len(self.targets)
            for k in range(n):
                i = (self.sticky + k) % n
                if k > 0:
                    self.res.failovers += 1
                got = await self._try(self.targets[i], path, kind, keep)
                if got is not None:
                    self.sticky = i
                    return got
            if round_ == 0:
                self.res.resteers += 1
                await self._steer()
        raise PlayFailed(f"all URLs failed for {kind}")

    async def _try(self, tgt: _Target, path: str, kind: str,
                   keep: bool) -> tuple[int, bytes] | None:
        ctx = self.ctx
        t_start = ctx.now()
        status, nbytes, cache, err = 0, 0, "", ""
        parts: list[bytes] = []
        t_done = t_start
        timeout = aiohttp.ClientTimeout(total=ctx.cfg.request_timeout,
                                        sock_connect=ctx.cfg.connect_timeout)
        try:
            async with ctx.http.get(tgt.url(path), timeout=timeout) as resp:
                status = resp.status
                cache = parse_cache_status(resp.headers.get("Cache-Status"))
                if status != 200:
                    err = f"http {status}"
                    await resp.read()
                else:
                    async for chunk in resp.content.iter_chunked(ctx.cfg.chunk):
                        nbytes += len(chunk)
                        parts.append(chunk)
                t_done = ctx.now()
        except TimeoutError:
            err = "timeout"
        except aiohttp.ClientPayloadError:
            err = "truncated"
        except aiohttp.ClientConnectorError:
            err = "refused"
        except (aiohttp.ClientError, ConnectionError, OSError) as e:
            err = f"reset ({type(e).__name__})"
        if not err:
            exp = ctx.expected(path)
            verdict = "unverified"
            if exp is not None:
                size, digest = exp
                if nbytes < size:
                    verdict = "short"
                elif nbytes != size or await _md5_hex(parts) != digest:
                    verdict = "corrupt"
                else:
                    verdict = "ok"
            if kind == "segment":
                ctx.stats.segment_checked(verdict)
            if verdict in ("short", "corrupt"):
                err = verdict
                if kind == "segment":
                    self.res.corrupt += 1
        t = tgt.t
        ctx.stats.request(RequestSample(
            ctx.now(), kind, tgt.source, t.site, t.region, status, nbytes,
            (t_done if t_done > t_start else ctx.now()) - t_start, cache, not err, err,
        ))
        if err:
            return None
        return nbytes, b"".join(parts) if keep else b""

