"""A player of every format, for the tier benchmarks (standard library only).

    python3 bench/crawl.py live STOPFILE POLL_MS HOST...   poll until STOPFILE exists
    python3 bench/crawl.py ended - 0 HOST...               one pass over everything

Fetches, from each HOST, every manifest of /show/show.ism (HLS fMP4 and
MPEG-TS, DASH csf and cmaf, Smooth, HDS with its bootstraps) and every init
segment and media segment they list: live, each new one once per poll, as
players following the live edge would; ended, all of them once more, as a
player of the finished asset would. Prints one line per host: requests,
bytes and answers other than 200 (each of those on stderr).
"""

import base64
import os
import struct
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

BASE = "/show/show.ism"
MANIFESTS = {
    "hls-fmp4": "Manifest(format=m3u8-cmaf)",
    "hls-ts": "Manifest(format=m3u8-aapl)",
    "dash-csf": "Manifest(format=mpd-time-csf)",
    "dash-cmaf": "Manifest(format=mpd-time-cmaf)",
    "smooth": "Manifest",
    "hds": "Manifest(format=f4m-f4f)",
}


class Host:
    def __init__(self, addr):
        self.addr = addr
        self.seen = set()
        self.requests = 0
        self.bytes = 0
        self.failed = 0

    def get(self, rel):
        self.requests += 1
        try:
            with urllib.request.urlopen(f"http://{self.addr}{BASE}/{rel}", timeout=30) as r:
                body = r.read()
        except (urllib.error.URLError, OSError) as e:
            self.failed += 1
            print(f"{self.addr}{BASE}/{rel}: {e}", file=sys.stderr)
            return None
        self.bytes += len(body)
        return body


def hls(host, manifest):
    master = host.get(manifest)
    if master is None:
        return []
    lines = master.decode().splitlines()
    playlists = [l for l in lines if l and not l.startswith("#")]
    playlists += [l.split('URI="')[1].split('"')[0] for l in lines if 'URI="' in l]
    out = []
    for p in playlists:
        media = host.get(p)
        if media is None:
            continue
        folder = p.rsplit("/", 1)[0]
        for l in media.decode().splitlines():
            if l.startswith("#EXT-X-MAP:URI="):
                out.append(folder + "/" + l.split('"')[1])
            elif l and not l.startswith("#"):
                out.append(f"{folder}/{l}")
    return out


def dash(host, manifest):
    body = host.get(manifest)
    if body is None:
        return []
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    out = []
    for rep in ET.fromstring(body).iterfind(".//d:Representation", ns):
        tpl = rep.find("d:SegmentTemplate", ns)
        if tpl is None:
            continue
        rid = rep.get("id")
        out.append(tpl.get("initialization").replace("$RepresentationID$", rid))
        t = 0
        for s in tpl.iterfind("d:SegmentTimeline/d:S", ns):
            t = int(s.get("t", t))
            for _ in range(1 + max(0, int(s.get("r", "0")))):
                out.append(tpl.get("media").replace("$RepresentationID$", rid).replace("$Time$", str(t)))
                t += int(s.get("d"))
    return out


def smooth(host, manifest):
    body = host.get(manifest)
    if body is None:
        return []
    out = []
    for index in ET.fromstring(body).iter("StreamIndex"):
        url = index.get("Url")
        starts, t = [], 0
        for c in index.iter("c"):
            t = int(c.get("t", t))
            for _ in range(int(c.get("r", "1"))):
                starts.append(t)
                t += int(c.get("d"))
        for level in index.iter("QualityLevel"):
            for s in starts:
                out.append(url.replace("{bitrate}", level.get("Bitrate")).replace("{start time}", str(s)))
    return out


def hds_numbers(abst):
    """Fragment numbers an abst bootstrap lists (one segment run, as Sluice writes)."""
    i = abst.find(b"asrt") + 4 + 4  # box type, version and flags
    i += 1  # QualityEntryCount (0)
    (runs,) = struct.unpack_from(">I", abst, i)
    span = struct.unpack_from(">II", abst, i + 4)[1] if runs else 0
    i = abst.find(b"afrt") + 4 + 4 + 4 + 1  # type, version/flags, timescale, qualities
    (count,) = struct.unpack_from(">I", abst, i)
    i += 4
    entries = []
    for _ in range(count):
        first, _ts, duration = struct.unpack_from(">IQI", abst, i)
        i += 16
        if duration == 0:
            i += 1  # discontinuity indicator
        else:
            entries.append(first)
    if not entries:
        return []
    last = entries[0] + span - 1
    numbers = []
    for k, first in enumerate(entries):
        end = entries[k + 1] - 1 if k + 1 < len(entries) else last
        numbers.extend(range(first, end + 1))
    return numbers


def hds(host, manifest):
    body = host.get(manifest)
    if body is None:
        return []
    ns = {"f": "http://ns.adobe.com/f4m/1.0"}
    root = ET.fromstring(body)
    # Live: the bootstrap's URL; ended: the bootstrap inline (base64).
    boots = {b.get("id"): b for b in root.iterfind("f:bootstrapInfo", ns)}
    out = []
    for media in root.iterfind("f:media", ns):
        boot = boots[media.get("bootstrapInfoId")]
        if boot.get("url"):
            abst = host.get(boot.get("url"))
        else:
            abst = base64.b64decode(boot.text or "")
        if abst is None:
            continue
        out.extend(f"{media.get('url')}Seg1-Frag{n}" for n in hds_numbers(abst))
    return out


FORMATS = {"hls": hls, "dash": dash, "smooth": smooth, "hds": hds}


def one_pass(host, again):
    for name, manifest in MANIFESTS.items():
        for url in FORMATS[name.split("-")[0]](host, manifest):
            if again or url not in host.seen:
                host.seen.add(url)
                host.get(url)


def main():
    mode, stopfile, poll_ms = sys.argv[1], sys.argv[2], int(sys.argv[3])
    hosts = [Host(a) for a in sys.argv[4:]]
    if mode == "live":
        while not os.path.exists(stopfile):
            began = time.monotonic()
            for h in hosts:
                one_pass(h, False)
            time.sleep(max(0.0, poll_ms / 1000 - (time.monotonic() - began)))
    else:
        for h in hosts:
            one_pass(h, True)
    for h in hosts:
        print(f"{mode} {h.addr} {h.requests} {h.bytes} {h.failed}")


main()
