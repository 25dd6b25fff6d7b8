// Opens Sluice's preview page in headless Debian Chromium and checks what
// an operator relies on.
//
//   node tests/browser/preview_page.mjs --url http://ADDR/preview/CH/
//        [--levels N] [--edge] [--timeout SECONDS] [--screenshot FILE]
//
// Without --edge: the video plays (currentTime past 2 s), the rendition
// picker lists "auto" and N renditions (default 2), choosing another
// rendition switches hls.js to it and playback goes on, and the state panel
// updates (at least one encoder, the chart's number of points grows between
// two reads, the newest fragment's age shown). With --edge: the video plays
// and the page shows the edge note instead of the state panel.
//
// Every request the page makes (the page, its scripts, hls.js's worker,
// manifests, segments, state.json) is recorded; one whose origin is not the
// server's is refused and fails the run. Prints one JSON report and exits 0
// when every check passed.

import { chromium } from 'playwright-core';

function args() {
  const out = { levels: 2, edge: false, timeout: 120, screenshot: null };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    switch (a[i]) {
      case '--url': out.url = a[++i]; break;
      case '--levels': out.levels = Number(a[++i]); break;
      case '--edge': out.edge = true; break;
      case '--timeout': out.timeout = Number(a[++i]); break;
      case '--screenshot': out.screenshot = a[++i]; break;
      default: throw new Error(`unknown argument ${a[i]}`);
    }
  }
  if (!out.url) throw new Error('usage: preview_page.mjs --url URL');
  return out;
}

async function main() {
  const opt = args();
  const origin = new URL(opt.url).origin;
  const deadline = Date.now() + opt.timeout * 1000;
  const report = { ok: false, url: opt.url, checks: {}, requests: 0, foreign: [], failed: [] };
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required', '--mute-audio'],
  });
  const paths = new Set();
  const record = (url) => {
    if (url.startsWith('data:')) return true;
    let o = null;
    try { o = new URL(url).origin; } catch { /* unparsable: foreign */ }
    report.requests += 1;
    if (o !== origin) {
      if (!report.foreign.includes(url)) report.foreign.push(url);
      return false;
    }
    paths.add(new URL(url).pathname.replace(/\/[0-9]+\.m4s$/, '/{start}.m4s'));
    return true;
  };
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    // Every request of the context (page and workers) passes here: only the
    // server's origin goes out.
    await context.route('**/*', (route) => (record(route.request().url()) ? route.continue() : route.abort()));
    const page = await context.newPage();
    page.on('response', (r) => {
      if (r.status() >= 400) report.failed = report.failed.concat(`${r.status()} ${r.url()}`).slice(-10);
    });
    page.on('console', (m) => {
      if (m.type() === 'error') report.console = (report.console || []).concat(m.text()).slice(-10);
    });
    page.on('pageerror', (e) => { report.pageErrors = (report.pageErrors || []).concat(String(e)).slice(-10); });
    const response = await page.goto(opt.url);
    report.status = response ? response.status() : null;

    // Polls `f` in the page until it returns a truthy value or the deadline.
    const until = async (name, f, arg) => {
      for (;;) {
        const v = await page.evaluate(f, arg).catch((e) => ({ error: String(e) }));
        if (v && !v.error) {
          report.checks[name] = v;
          return v;
        }
        if (Date.now() > deadline) {
          report.checks[name] = v || false;
          throw new Error(`timed out waiting for ${name}`);
        }
        await page.waitForTimeout(250);
      }
    };
    const now = () => page.evaluate(() => document.getElementById('video').currentTime);

    await until('plays', () => {
      const t = document.getElementById('video').currentTime;
      return t > 2 ? { currentTime: t } : null;
    });

    if (opt.edge) {
      await until('edgeNote', () => {
        const note = document.getElementById('edge-note');
        const panel = document.getElementById('state-panel');
        return !note.hidden && panel.hidden ? { text: note.textContent.trim().slice(0, 200) } : null;
      });
    } else {
      const levels = await until('levels', (n) => {
        const options = [...document.getElementById('rendition').options].map((o) => ({ value: o.value, label: o.textContent }));
        return options.length >= n + 1 && options[0].value === '-1' ? options : null;
      }, opt.levels);
      // Another rendition than the one playing, chosen as an operator would.
      const current = await page.evaluate(() => window.sluicePreview.hls.currentLevel);
      const target = levels.filter((o) => o.value !== '-1' && Number(o.value) !== current).pop();
      if (!target) throw new Error('no other rendition to switch to');
      const switchesBefore = await page.evaluate(() => window.sluicePreview.levelSwitches);
      await page.selectOption('#rendition', target.value);
      report.switchedTo = target.label;
      await until('switched', ([want, before]) => {
        const p = window.sluicePreview;
        const shown = document.getElementById('playing').dataset.level;
        return p.hls.currentLevel === want && p.levelSwitches > before && shown === String(want) && !p.hls.autoLevelEnabled
          ? { level: want, label: document.getElementById('playing').textContent }
          : null;
      }, [Number(target.value), switchesBefore]);
      const at = await now();
      await until('playsAfterSwitch', (t) => {
        const v = document.getElementById('video');
        return v.currentTime > t + 2 ? { from: t, currentTime: v.currentTime } : null;
      }, at);

      await until('encoders', () => {
        const n = Number(document.getElementById('encoder-count').textContent);
        return n >= 1 ? { count: n, rows: document.querySelectorAll('#encoders tbody tr:not(.empty)').length } : null;
      });
      const first = await until('chartPoints', () => {
        const n = Number(document.getElementById('chart').dataset.points);
        return n > 0 ? n : null;
      });
      await until('chartGrows', (n) => {
        const m = Number(document.getElementById('chart').dataset.points);
        return m > n ? { first: n, later: m } : null;
      }, first);
      await until('fragmentAge', () => {
        const el = document.getElementById('fragment-age');
        return el.dataset.ms !== '' && /\d/.test(el.textContent) ? { ms: Number(el.dataset.ms), text: el.textContent } : null;
      });
      report.polls = await page.evaluate(() => window.sluicePreview.polls);
      report.tracks = await page.evaluate(() => document.querySelectorAll('#tracks tbody tr:not(.empty)').length);
    }
    if (opt.screenshot) await page.screenshot({ path: opt.screenshot, fullPage: true });
    report.ok = report.foreign.length === 0 && !report.pageErrors;
  } catch (e) {
    report.error = String(e && e.message || e);
  } finally {
    await browser.close();
  }
  report.paths = [...paths].sort();
  process.stdout.write(JSON.stringify(report) + '\n');
  process.exit(report.ok ? 0 : 1);
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ ok: false, error: String(e && e.stack || e) }) + '\n');
  process.exit(2);
});
