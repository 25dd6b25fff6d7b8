// Plays a manifest in headless Debian Chromium with a real browser player
// and reports whether playback advanced without an error.
//
//   node tests/browser/play.mjs --player hls|dash|shaka|mss --url URL
//        [--advance SECONDS] [--seek-back] [--timeout SECONDS]
//        [--chromium-arg ARG]... [--protocols]
//
// The report lists `stalls` (ms from each 'waiting' after playback
// started to the next 'playing') and `maxStallMs` (the longest, counting
// one still open at the end).
//
// hls = hls.js, dash = dash.js, shaka = shaka-player, mss = dash.js with
// its Smooth Streaming module. The page and the player libraries are served
// from this directory by a server on 127.0.0.1 (port 0); any request to
// another host is refused and reported. Prints one JSON object and exits 0
// when `currentTime` advanced by --advance seconds (default 5) with no
// fatal player error and no media element error, and, with --seek-back,
// when a seek back to the start of the seekable range played on too.
//
// --chromium-arg (repeatable) adds a Chromium command-line switch (e.g.
// --origin-to-force-quic-on=HOST:PORT). --protocols records, through the
// DevTools protocol (Network.responseReceived), the protocol of every
// response from the media URL's origin and reports the counts as
// `protocols: {"h3": n, ...}`.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));

function args() {
  const out = { advance: 5, seekBack: false, timeout: 90, chromiumArgs: [], protocols: false };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    switch (a[i]) {
      case '--player': out.player = a[++i]; break;
      case '--url': out.url = a[++i]; break;
      case '--advance': out.advance = Number(a[++i]); break;
      case '--seek-back': out.seekBack = true; break;
      case '--timeout': out.timeout = Number(a[++i]); break;
      case '--chromium-arg': out.chromiumArgs.push(a[++i]); break;
      case '--protocols': out.protocols = true; break;
      default: throw new Error(`unknown argument ${a[i]}`);
    }
  }
  if (!['hls', 'dash', 'shaka', 'mss'].includes(out.player) || !out.url) {
    throw new Error('usage: play.mjs --player hls|dash|shaka|mss --url URL');
  }
  return out;
}

const LIBS = {
  hls: ['hls.js/dist/hls.min.js'],
  dash: ['dashjs/dist/dash.all.min.js'],
  mss: ['dashjs/dist/dash.all.min.js', 'dashjs/dist/dash.mss.min.js'],
  shaka: ['shaka-player/dist/shaka-player.compiled.js'],
};

// The page: a muted video element, the player attached to it, and a
// `window.report` the driver reads.
function page(player, url) {
  const scripts = LIBS[player].map((l) => `<script src="/lib/${l}"></script>`).join('\n');
  return `<!doctype html><html><head><meta charset="utf-8">${scripts}</head>
<body><video id="v" muted playsinline width="320"></video>
<script>
const report = { errors: [], warnings: [] };
window.report = report;
const video = document.getElementById('v');
const url = ${JSON.stringify(url)};
// Stalls after playback started: 'waiting' to the next 'playing', in ms.
report.stalls = [];
let playing = false;
let stallStart = null;
video.addEventListener('waiting', () => { if (playing && stallStart === null) stallStart = performance.now(); });
video.addEventListener('playing', () => {
  playing = true;
  if (stallStart !== null) report.stalls.push(Math.round(performance.now() - stallStart));
  stallStart = null;
});
window.openStall = () => (stallStart === null ? 0 : Math.round(performance.now() - stallStart));
video.addEventListener('error', () => {
  const e = video.error;
  report.errors.push('media element error ' + (e ? e.code + ' ' + e.message : ''));
});
async function start() {
  const player = ${JSON.stringify(player)};
  if (player === 'hls') {
    const hls = new Hls({ lowLatencyMode: false });
    hls.on(Hls.Events.ERROR, (_, d) => {
      (d.fatal ? report.errors : report.warnings).push('hls.js ' + d.type + ' ' + d.details);
    });
    hls.loadSource(url);
    hls.attachMedia(video);
  } else if (player === 'dash' || player === 'mss') {
    const p = dashjs.MediaPlayer().create();
    p.on(dashjs.MediaPlayer.events.ERROR, (e) => {
      report.errors.push('dash.js ' + JSON.stringify(e.error || e).slice(0, 300));
    });
    // With no UTCTiming in a manifest (Smooth has none), dash.js asks a
    // public time server; point its default at the origin instead, as an
    // operator would: the Date header of a HEAD on the manifest.
    p.updateSettings({ streaming: { utcSynchronization: {
      defaultTimingSource: { scheme: 'urn:mpeg:dash:utc:http-head:2014', value: url },
    } } });
    p.initialize(video, url, true);
  } else {
    shaka.polyfill.installAll();
    const p = new shaka.Player();
    await p.attach(video);
    p.addEventListener('error', (e) => {
      report.errors.push('shaka ' + (e.detail ? e.detail.code + ' ' + e.detail.message : ''));
    });
    try { await p.load(url); } catch (e) { report.errors.push('shaka load ' + e.code + ' ' + e.message); }
  }
  // dash.js starts playback itself (autoStart): it must see the element's
  // 'play' event, or it never schedules a manifest refresh (it starts
  // "paused") and a live stream stalls at the edge it first saw.
  if (player !== 'dash' && player !== 'mss') video.play().catch(() => {});
}
start().catch((e) => report.errors.push('start ' + e));
</script></body></html>`;
}

function serve(player, url) {
  const html = page(player, url);
  const libRoot = path.join(here, 'node_modules');
  const server = http.createServer((req, res) => {
    const p = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    if (p === '/') {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end(html);
    }
    if (p.startsWith('/lib/')) {
      const file = path.normalize(path.join(libRoot, p.slice(5)));
      if (file.startsWith(libRoot + path.sep) && fs.existsSync(file)) {
        res.writeHead(200, { 'content-type': 'text/javascript' });
        return fs.createReadStream(file).pipe(res);
      }
    }
    res.writeHead(404);
    res.end();
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function main() {
  const opt = args();
  const server = await serve(opt.player, opt.url);
  const origin = `http://127.0.0.1:${server.address().port}/`;
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required', '--mute-audio',
      ...opt.chromiumArgs],
  });
  const result = { ok: false, player: opt.player, url: opt.url, refused: [] };
  const deadline = Date.now() + opt.timeout * 1000;
  try {
    const context = await browser.newContext();
    // Loopback only: anything else is refused and reported.
    await context.route('**/*', (route) => {
      const host = new URL(route.request().url()).hostname;
      if (host === '127.0.0.1' || host === 'localhost' || host === '[::1]') {
        return route.continue();
      }
      result.refused.push(route.request().url());
      return route.abort();
    });
    const pg = await context.newPage();
    if (opt.protocols) {
      // Counted per protocol Chromium reports (h3, h2, http/1.1, ...).
      const mediaOrigin = new URL(opt.url).origin;
      result.protocols = {};
      const cdp = await context.newCDPSession(pg);
      cdp.on('Network.responseReceived', (e) => {
        let origin = null;
        try { origin = new URL(e.response.url).origin; } catch { return; }
        if (origin !== mediaOrigin) return;
        const p = e.response.protocol || 'unknown';
        result.protocols[p] = (result.protocols[p] || 0) + 1;
      });
      await cdp.send('Network.enable');
    }
    // Responses that failed, kept for the report (the last 10).
    pg.on('response', (r) => {
      if (r.status() >= 400) {
        result.failed = (result.failed || []).concat(`${r.status()} ${r.url()}`).slice(-10);
      }
    });
    pg.on('console', (m) => {
      if (m.type() === 'error') result.console = (result.console || []).concat(m.text()).slice(-10);
    });
    await pg.goto(origin);
    const state = () => pg.evaluate(() => {
      const v = document.getElementById('v');
      const s = v.seekable.length ? [v.seekable.start(0), v.seekable.end(v.seekable.length - 1)] : null;
      const buffered = [];
      for (let i = 0; i < v.buffered.length; i++) buffered.push([v.buffered.start(i), v.buffered.end(i)]);
      return {
        t: v.currentTime, seekable: s, buffered, readyState: v.readyState,
        stalls: window.report.stalls, openStall: window.openStall(),
        errors: window.report.errors, warnings: window.report.warnings,
      };
    });
    // Waits until playback passes `target` seconds, or an error, or the deadline.
    const until = async (target) => {
      for (;;) {
        const s = await state();
        Object.assign(result, s);
        if (s.errors.length) return false;
        if (s.t >= target) return true;
        if (Date.now() > deadline) {
          result.timedOut = true;
          return false;
        }
        await pg.waitForTimeout(250);
      }
    };
    // Playback starts somewhere (the live edge for live): measure from there.
    let first = null;
    while (first === null && Date.now() < deadline) {
      const s = await state();
      if (s.errors.length) break;
      if (s.t > 0) first = s.t;
      else await pg.waitForTimeout(250);
    }
    result.startedAt = first;
    let ok = first !== null && (await until(first + opt.advance));
    if (ok && opt.seekBack) {
      const s = await state();
      const to = (s.seekable ? s.seekable[0] : 0) + 0.5;
      result.seekedTo = to;
      await pg.evaluate((t) => { document.getElementById('v').currentTime = t; }, to);
      await pg.waitForTimeout(500);
      const after = await state();
      result.before = s.t;
      ok = after.t < s.t - 1 && (await until(to + 2));
    }
    result.maxStallMs = Math.max(0, result.openStall || 0, ...(result.stalls || []));
    result.ok = ok && result.refused.length === 0;
  } finally {
    await browser.close();
    server.close();
  }
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(result.ok ? 0 : 1);
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ ok: false, error: String(e && e.stack || e) }) + '\n');
  process.exit(2);
});
