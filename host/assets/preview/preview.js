// Sluice preview page: plays the channel's preview with hls.js, offers its
// renditions, and shows the channel's live state from state.json (polled
// every 2 s). Every URL is relative to /preview/{channel}/: nothing is
// loaded from anywhere else.
'use strict';

(function () {
  const MANIFEST = 'preview.isml/Manifest(format=m3u8-cmaf)';
  const STATE = 'state.json';
  const POLL_MS = 2000;
  // The chart spans the history held, from 2 to 10 minutes.
  const CHART_MIN_SPAN_MS = 2 * 60 * 1000;
  const CHART_MAX_SPAN_MS = 10 * 60 * 1000;
  const COLORS = ['#5aa9ff', '#3ecf8e', '#f2b33d', '#ff7ab6', '#b18cff', '#4dd4e6', '#ff8a5c', '#c2d94c'];

  const $ = (id) => document.getElementById(id);
  const video = $('video');
  const picker = $('rendition');
  const page = { hls: null, state: null, polls: 0, levelSwitches: 0, edge: false };
  // For operators' scripts and the tests.
  window.sluicePreview = page;

  // ---- formatting --------------------------------------------------------

  function bits(n) {
    if (!(n > 0)) return '0';
    if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 1 : 2) + ' Mbit/s';
    return Math.round(n / 1e3) + ' kbit/s';
  }

  function bytes(n) {
    if (n >= 1e9) return (n / 1e9).toFixed(2) + ' GB';
    if (n >= 1e6) return (n / 1e6).toFixed(1) + ' MB';
    if (n >= 1e3) return Math.round(n / 1e3) + ' kB';
    return n + ' B';
  }

  function duration(ms) {
    if (ms == null) return '–';
    if (ms < 10000) return (ms / 1000).toFixed(1) + ' s';
    const s = Math.round(ms / 1000);
    if (s < 120) return s + ' s';
    const m = Math.floor(s / 60);
    if (m < 120) return m + ' min ' + String(s % 60).padStart(2, '0') + ' s';
    return Math.floor(m / 60) + ' h ' + String(m % 60).padStart(2, '0') + ' min';
  }

  // Fragment age against the fragment length: green, amber, red.
  function ageClass(ms, fragmentMs) {
    if (ms == null) return 'muted';
    if (ms <= fragmentMs * 1.5) return 'ok';
    if (ms <= fragmentMs * 3) return 'warn';
    return 'bad';
  }

  function cell(text, cls) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function fillRows(table, rows, emptyText, columns) {
    const body = table.tBodies[0];
    body.replaceChildren();
    if (rows.length === 0) {
      const tr = document.createElement('tr');
      tr.className = 'empty';
      const td = cell(emptyText);
      td.colSpan = columns;
      tr.append(td);
      body.append(tr);
      return;
    }
    for (const cells of rows) {
      const tr = document.createElement('tr');
      tr.append(...cells);
      body.append(tr);
    }
  }

  // ---- player ------------------------------------------------------------

  function levelLabel(l) {
    const parts = [];
    if (l.height) parts.push(l.height + 'p');
    if (l.width && l.height) parts.push(l.width + '×' + l.height);
    if (l.bitrate) parts.push(bits(l.bitrate));
    return parts.join(' · ') || 'level';
  }

  function showPlaying() {
    const hls = page.hls;
    if (!hls) return;
    const l = hls.levels[hls.currentLevel];
    const auto = hls.autoLevelEnabled ? ' (auto)' : '';
    $('playing').textContent = l ? 'playing ' + levelLabel(l) + auto : 'loading…';
    $('playing').className = l ? '' : 'muted';
    $('playing').dataset.level = String(hls.currentLevel);
  }

  function playerError(text) {
    const p = $('player-error');
    p.textContent = text;
    p.hidden = !text;
  }

  function startPlayer() {
    if (window.Hls && window.Hls.isSupported()) {
      const hls = new window.Hls({ lowLatencyMode: false, liveDurationInfinity: true });
      page.hls = hls;
      hls.on(window.Hls.Events.MANIFEST_PARSED, (_, data) => {
        picker.replaceChildren(new Option('auto', '-1'));
        data.levels.forEach((l, i) => picker.append(new Option(levelLabel(l), String(i))));
        picker.disabled = data.levels.length < 2;
        picker.value = '-1';
        video.play().catch(() => {});
      });
      hls.on(window.Hls.Events.LEVEL_SWITCHED, () => {
        page.levelSwitches += 1;
        showPlaying();
      });
      hls.on(window.Hls.Events.FRAG_BUFFERED, () => playerError(''));
      let recovering = 0;
      hls.on(window.Hls.Events.ERROR, (_, d) => {
        if (!d.fatal) return;
        playerError('player: ' + d.type + ' ' + d.details + ' (retrying)');
        if (d.type === window.Hls.ErrorTypes.MEDIA_ERROR && recovering++ < 3) {
          hls.recoverMediaError();
        } else {
          setTimeout(() => hls.startLoad(), 2000);
        }
      });
      hls.loadSource(MANIFEST);
      hls.attachMedia(video);
    } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
      // Safari's own HLS: no rendition picker.
      video.src = MANIFEST;
      $('playing').textContent = 'native HLS';
      video.play().catch(() => {});
    } else {
      playerError('This browser cannot play HLS (no Media Source Extensions).');
    }
  }

  picker.addEventListener('change', () => {
    const hls = page.hls;
    if (!hls) return;
    // currentLevel switches at once (flushing what is buffered); -1 is auto.
    hls.currentLevel = Number(picker.value);
    showPlaying();
  });

  function playbackStats() {
    $('pb-time').textContent = video.currentTime ? video.currentTime.toFixed(1) + ' s' : '–';
    let ahead = 0;
    for (let i = 0; i < video.buffered.length; i++) {
      if (video.buffered.start(i) <= video.currentTime + 0.1 && video.buffered.end(i) > video.currentTime) {
        ahead = video.buffered.end(i) - video.currentTime;
      }
    }
    $('pb-buffer').textContent = ahead.toFixed(1) + ' s';
    const latency = page.hls && Number.isFinite(page.hls.latency) ? page.hls.latency : null;
    $('pb-latency').textContent = latency == null ? '–' : latency.toFixed(1) + ' s';
    const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
    $('pb-dropped').textContent = q ? q.droppedVideoFrames + ' / ' + q.totalVideoFrames : '–';
  }

  // ---- state panel ---------------------------------------------------------

  function renderStatus(s) {
    const badge = $('status');
    let text;
    let cls = '';
    const stale = s.fragment_age_ms != null && s.fragment_age_ms > s.fragment_ms * 3;
    if (s.state !== 'running') {
      text = s.state.toUpperCase();
    } else if (s.presentation === 'ended') {
      text = 'ENDED';
    } else if (s.presentation === 'empty' || s.encoders.length === 0) {
      text = 'NO SIGNAL';
      cls = 'warn';
    } else if (stale) {
      text = 'STALLED';
      cls = 'bad';
    } else {
      text = 'LIVE';
      cls = 'live';
    }
    badge.textContent = text;
    badge.className = 'badge ' + cls;
    const age = $('fragment-age');
    age.textContent = duration(s.fragment_age_ms) + (s.fragment_age_ms == null ? '' : ' ago');
    age.className = ageClass(s.fragment_age_ms, s.fragment_ms);
    age.dataset.ms = s.fragment_age_ms == null ? '' : String(s.fragment_age_ms);
  }

  function renderEncoders(s) {
    $('encoder-count').textContent = String(s.encoders.length);
    fillRows($('encoders'), s.encoders.map((e) => [
      cell(e.address || 'built-in', 'mono'),
      cell(e.stream),
      cell(e.protocol),
      cell(duration(s.now_ms - e.connected_ms), 'num'),
      cell(bytes(e.bytes), 'num'),
      cell(bits(e.bitrate), 'num'),
    ]), 'none connected', 6);
  }

  function trackFormat(t) {
    if (t.kind === 'video' && t.width) return t.width + '×' + t.height;
    if (t.kind === 'audio') {
      const parts = [];
      if (t.sample_rate) parts.push(t.sample_rate / 1000 + ' kHz');
      if (t.channels) parts.push(t.channels + ' ch');
      if (t.language && t.language !== 'und') parts.push(t.language);
      return parts.join(' · ');
    }
    return t.language && t.language !== 'und' ? t.language : '';
  }

  function renderTracks(s) {
    fillRows($('tracks'), s.tracks.map((t) => [
      cell(String(t.id), 'num'),
      cell(t.stream),
      cell(t.kind),
      cell(t.codec || t.fourcc, 'mono'),
      cell(trackFormat(t)),
      cell(bits(t.bitrate), 'num'),
      cell(String(t.fragments), 'num'),
    ]), 'no tracks yet', 7);
  }

  function renderStreams(s) {
    const table = $('streams');
    fillRows(table, s.streams.map((x) => [
      cell(x.name),
      cell(String(x.fragments), 'num'),
      cell(String(x.duplicates_matching), 'num'),
      cell(String(x.duplicates_mismatching), x.duplicates_mismatching ? 'num bad' : 'num'),
      cell(String(x.overlapping), 'num'),
      cell(String(x.discontinuities), x.discontinuities ? 'num warn' : 'num'),
      cell(duration(x.fragment_age_ms), 'num ' + ageClass(x.fragment_age_ms, s.fragment_ms)),
    ]), 'nothing received yet', 7);
    const st = s.stats;
    const tr = document.createElement('tr');
    tr.append(cell('channel'), cell(String(st.fragments), 'num'),
      cell(String(st.duplicates_matching), 'num'), cell(String(st.duplicates_mismatching), 'num'),
      cell(String(st.overlapping), 'num'), cell(String(st.discontinuities), 'num'), cell(''));
    table.tFoot.replaceChildren(tr);
  }

  // An axis label: 1 Mbit/s, 1.5 Mbit/s, 500 kbit/s.
  function axisBits(n) {
    if (n >= 1e6) return +(n / 1e6).toFixed(2) + ' Mbit/s';
    return +(n / 1e3).toFixed(1) + ' kbit/s';
  }

  // A 1-2-5 step for about `n` grid lines up to `max`.
  function niceStep(max, n) {
    const raw = max / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * mag >= raw) return m * mag;
    return 10 * mag;
  }

  function renderChart(s) {
    const canvas = $('chart');
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 600;
    const h = canvas.clientHeight || 180;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const series = s.streams.map((x, i) => ({ name: x.name, color: COLORS[i % COLORS.length], h: x.history }));
    const end = Math.max(s.now_ms, ...series.map((x) => x.h.end_ms));
    let max = 0;
    let points = 0;
    for (const x of series) {
      for (const b of x.h.bitrate) max = Math.max(max, b);
      points += x.h.bitrate.length;
    }
    canvas.dataset.points = String(points);
    const held = Math.max(0, ...series.map((x) => x.h.bitrate.length * x.h.interval_ms + (end - x.h.end_ms)));
    const span = Math.min(CHART_MAX_SPAN_MS, Math.max(CHART_MIN_SPAN_MS, Math.ceil(held / 60000) * 60000));
    const pad = { l: 78, r: 10, t: 8, b: 20 };
    const plotW = w - pad.l - pad.r;
    const plotH = h - pad.t - pad.b;
    const step = niceStep(max > 0 ? max * 1.1 : 1e6, 4);
    const top = Math.max(step, Math.ceil((max * 1.1) / step) * step);
    const style = getComputedStyle(document.body);
    const muted = style.getPropertyValue('--muted').trim() || '#8a94a3';
    const line = style.getPropertyValue('--line').trim() || '#262c35';
    ctx.font = '11px system-ui, sans-serif';
    ctx.lineWidth = 1;
    // Horizontal grid and bitrate labels.
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let v = 0; v <= top + 1; v += step) {
      const y = pad.t + plotH - (v / top) * plotH;
      ctx.strokeStyle = line;
      ctx.beginPath();
      ctx.moveTo(pad.l, Math.round(y) + 0.5);
      ctx.lineTo(pad.l + plotW, Math.round(y) + 0.5);
      ctx.stroke();
      ctx.fillStyle = muted;
      ctx.fillText(v === 0 ? '0' : axisBits(v), pad.l - 6, y);
    }
    // Time labels: before now.
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    const tick = span <= 3 * 60000 ? 30000 : span <= 6 * 60000 ? 60000 : 120000;
    for (let ago = span; ago >= 0; ago -= tick) {
      const x = pad.l + plotW - (ago / span) * plotW;
      const label = ago === 0 ? 'now' : '−' + (ago % 60000 ? ago / 1000 + ' s' : ago / 60000 + ' min');
      ctx.fillStyle = muted;
      ctx.fillText(label, Math.min(Math.max(x, pad.l + 18), pad.l + plotW - 12), pad.t + plotH + 5);
    }
    // One line per stream; a sample is drawn at the middle of its interval.
    const xOf = (t) => pad.l + plotW - ((end - t) / span) * plotW;
    const yOf = (v) => pad.t + plotH - (v / top) * plotH;
    for (const x of series) {
      const n = x.h.bitrate.length;
      if (n === 0) continue;
      ctx.strokeStyle = x.color;
      ctx.lineWidth = 1.75;
      ctx.beginPath();
      x.h.bitrate.forEach((b, i) => {
        const t = x.h.end_ms - (n - i - 0.5) * x.h.interval_ms;
        const px = xOf(t);
        const py = yOf(b);
        if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
      });
      if (n === 1) ctx.lineTo(xOf(x.h.end_ms), yOf(x.h.bitrate[0]));
      ctx.stroke();
    }
    const legend = $('legend');
    legend.replaceChildren(...series.map((x) => {
      const span = document.createElement('span');
      const last = x.h.bitrate.length ? x.h.bitrate[x.h.bitrate.length - 1] : 0;
      span.textContent = x.name + ' ' + bits(last);
      span.style.setProperty('--swatch', x.color);
      return span;
    }));
    if (series.length === 0) {
      const span = document.createElement('span');
      span.className = 'muted';
      span.textContent = 'no stream received yet';
      legend.append(span);
    }
  }

  function render(s) {
    page.state = s;
    renderStatus(s);
    renderEncoders(s);
    renderTracks(s);
    renderStreams(s);
    renderChart(s);
  }

  function stateError(text) {
    const p = $('state-error');
    p.textContent = text;
    p.hidden = !text;
  }

  function showEdge(message) {
    page.edge = true;
    $('state-panel').hidden = true;
    $('edge-note').hidden = false;
    if (message) $('edge-message').textContent = message;
    $('status').textContent = 'EDGE';
    $('status').className = 'badge';
    $('fragment-age').textContent = '–';
  }

  async function poll() {
    try {
      const r = await fetch(STATE, { cache: 'no-store' });
      const body = await r.json().catch(() => null);
      if (r.status === 404 && body && body.error && body.error.code === 'edge') {
        showEdge(body.error.message);
        return; // Nothing to poll on an edge.
      }
      if (!r.ok || !body) {
        throw new Error(r.status + ' ' + (body && body.error ? body.error.message : r.statusText));
      }
      page.polls += 1;
      stateError('');
      render(body);
    } catch (e) {
      stateError('channel state unavailable: ' + e.message);
    }
    setTimeout(poll, POLL_MS);
  }

  window.addEventListener('resize', () => { if (page.state) renderChart(page.state); });
  setInterval(playbackStats, 500);
  startPlayer();
  poll();
})();
