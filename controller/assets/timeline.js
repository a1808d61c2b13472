// Print farm dashboard: the timeline (Gantt). One row per printer; a bar for the running job
// (from its start to the printer's live ETA) and one for each job the scheduler planned on
// it (GET /api/v1/queue, polled every 5 s while this view is shown); a "now" line.
//
// Cheap with 1,000 printers × many jobs: only the rows in the scroll viewport (plus a few)
// exist in the DOM; they are pooled, keyed by printer, and redrawn at most once a frame on
// scroll and once a second otherwise (the window slides with the clock). Bars per printer are
// indexed when the plan arrives, not per draw.
'use strict';

(() => {
  const farm = window.farm;
  const { api, fmtClock, fmtDur } = farm;
  const $ = farm.$;

  const ROW_H = 34; // px, keep in step with .tl-row in style.css
  const LABEL_W = 230; // px, the printer column
  const OVERSCAN = 6; // rows drawn above and below the viewport
  const PAST = 0.12; // share of the window before "now"
  const TICKS = [5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880].map((m) => m * 60000);
  const ACTIVE = farm.ACTIVE_JOB;

  const view = $('#view-timeline');
  const scroller = $('#tl-scroll');
  const body = $('#tl-body');
  const axis = $('#tl-axis');
  const nowLine = $('#tl-now');
  const rangeSel = $('#tl-range');
  const summary = $('#tl-summary');
  const waitingEl = $('#tl-waiting');
  const emptyEl = $('#tl-empty');

  /** printer id -> [{job_id, start, end}] planned by the scheduler, by start. */
  let planned = new Map();
  let waiting = [];
  let planAt = 0;
  /** Printer records in row order (filtered). */
  let order = [];
  /** printer id -> {el, label, state, bars: [el], last} for the rows in the DOM. */
  const rows = new Map();
  const ticks = [];
  let frame = 0;
  const stats = { draws: 0, totalMs: 0, maxMs: 0, rows: 0, bars: 0 };

  const shown = () => farm.view === 'timeline';
  const poll = farm.poller(loadPlan, 5000, shown);

  async function loadPlan() {
    const q = await api('GET', '/queue');
    const next = new Map();
    const wait = [];
    for (const it of (q && q.items) || []) {
      const start = farm.timeMs(it.start);
      const end = farm.timeMs(it.end);
      if (it.printer_id && start != null && end != null) {
        let list = next.get(it.printer_id);
        if (!list) next.set(it.printer_id, (list = []));
        list.push({ job_id: it.job_id, start, end });
      } else {
        wait.push(it);
      }
    }
    for (const list of next.values()) list.sort((a, b) => a.start - b.start);
    planned = next;
    waiting = wait;
    planAt = Date.now();
    renderWaiting();
    draw();
  }

  // ---------------------------------------------------------------- what to draw
  function jobLabel(j, id) {
    const name = (j && j.name) || id;
    return j && j.order ? `${j.order.order_id} · ${name}` : name;
  }

  function jobTitle(j, id, start, end, kind) {
    const lines = [`${(j && j.name) || id} (${id})`];
    if (j && j.order) {
      lines.push(`Order ${j.order.order_id}, item ${j.order.item + 1}, copy ${j.order.copy}`);
    }
    lines.push(`${kind}: ${fmtClock(start)} – ${fmtClock(end)} (${fmtDur((end - start) / 1000)})`);
    if (j && (j.material || j.colour)) lines.push([j.material, j.colour].filter(Boolean).join(' '));
    if (j && j.priority) lines.push(`priority ${j.priority}`);
    return lines.join('\n');
  }

  /** The running job of a printer as a bar: started → now + the printer's live ETA. */
  function runningBar(rec, now) {
    const d = rec.d;
    const id = (d.job && d.job.job_id) || d.current_job_id;
    if (!id) return null;
    const j = farm.jobs.get(id);
    if (j && !ACTIVE.has(j.state)) return null;
    const start = (j && (farm.timeMs(j.started_at) || farm.timeMs(j.assigned_at))) || now;
    let end = null;
    if (d.job && Number.isFinite(d.job.eta_s)) end = now + d.job.eta_s * 1000;
    else if (j && Number.isFinite(j.estimated_s)) end = start + j.estimated_s * 1000;
    if (end == null || end < now) end = now;
    const paused = d.state === 'paused' || (j && j.state === 'paused');
    return { job_id: id, start, end, kind: paused ? 'paused' : 'running', j };
  }

  function rowOrder() {
    // app.js keeps the printers sorted; the grid's filter applies here too.
    const recs = farm.sortedPrinters.filter((r) => farm.filter.matches(r));
    if (recs.length !== order.length) body.style.height = `${recs.length * ROW_H}px`;
    order = recs;
    return order;
  }

  function span(now) {
    const fixed = Number(rangeSel.value);
    if (fixed > 0) return fixed * 1000;
    // Fit: up to the last planned end (at least 15 min, at most a week).
    let last = now + 900000;
    for (const list of planned.values()) if (list.length) last = Math.max(last, list[list.length - 1].end);
    for (const rec of farm.printers.values()) {
      const eta = rec.d.job && rec.d.job.eta_s;
      if (Number.isFinite(eta)) last = Math.max(last, now + eta * 1000);
    }
    const want = Math.min(7 * 86400000, (last - now) / (1 - PAST)) * 1.05;
    const step = TICKS.find((t) => want / t <= 12) || 86400000;
    return Math.ceil(want / step) * step;
  }

  // ---------------------------------------------------------------- drawing
  function makeRow(id) {
    const el = document.createElement('div');
    el.className = 'tl-row';
    el.dataset.printerId = id;
    const label = document.createElement('div');
    label.className = 'tl-label';
    const name = document.createElement('span');
    name.className = 'tl-name';
    const state = document.createElement('span');
    state.className = 'tl-state';
    label.append(name, state);
    el.appendChild(label);
    return { el, name, state, bars: [], last: {} };
  }

  function setBar(bar, b, x0, scale, trackW) {
    const L = bar.last;
    let left = (b.start - x0) * scale;
    let right = (b.end - x0) * scale;
    const clipped = left < 0;
    left = Math.max(0, left);
    right = Math.min(trackW, right);
    const w = Math.max(3, right - left);
    const style = `${LABEL_W + Math.round(left)}|${Math.round(w)}`;
    if (L.style !== style) {
      L.style = style;
      bar.el.style.transform = `translateX(${LABEL_W + Math.round(left)}px)`;
      bar.el.style.width = `${Math.round(w)}px`;
    }
    if (L.id !== b.job_id) {
      L.id = b.job_id;
      bar.el.dataset.jobId = b.job_id;
    }
    if (L.kind !== b.kind) {
      L.kind = b.kind;
      bar.el.dataset.kind = b.kind;
    }
    const j = b.j || farm.jobs.get(b.job_id);
    const text = jobLabel(j, b.job_id);
    if (L.text !== text) {
      L.text = text;
      bar.el.textContent = text;
    }
    const title = jobTitle(j, b.job_id, b.start, b.end, b.kind === 'planned' ? 'Planned' : 'Printing');
    if (L.title !== title) {
      L.title = title;
      bar.el.title = title;
    }
    bar.el.classList.toggle('clipped', clipped);
  }

  function drawRow(row, rec, i, now, x0, x1, scale, trackW) {
    const L = row.last;
    const top = i * ROW_H;
    if (L.top !== top) {
      L.top = top;
      row.el.style.transform = `translateY(${top}px)`;
    }
    const name = rec.d.name || rec.id;
    if (L.name !== name) {
      L.name = name;
      row.name.textContent = name;
      row.name.title = name === rec.id ? name : `${name} (${rec.id})`;
    }
    const st = rec.d.state || 'offline';
    if (L.st !== st) {
      L.st = st;
      row.el.dataset.pstate = st;
      row.state.textContent = farm.STATE_LABEL[st] || st;
    }
    const list = [];
    const run = runningBar(rec, now);
    if (run) list.push(run);
    for (const p of planned.get(rec.id) || []) {
      if (p.end < x0 || p.start > x1) continue;
      const j = farm.jobs.get(p.job_id);
      // The plan is up to 5 s old: a job that has started since is the running bar.
      if (run && run.job_id === p.job_id) continue;
      if (j && j.state !== 'queued') continue;
      list.push({ job_id: p.job_id, start: p.start, end: p.end, kind: 'planned', j });
    }
    while (row.bars.length < list.length) {
      const el = document.createElement('div');
      el.className = 'tl-bar';
      row.el.appendChild(el);
      row.bars.push({ el, last: {} });
    }
    while (row.bars.length > list.length) row.bars.pop().el.remove();
    list.forEach((b, k) => setBar(row.bars[k], b, x0, scale, trackW));
    stats.bars += list.length;
  }

  function drawAxis(now, x0, x1, scale) {
    const s = x1 - x0;
    const step = TICKS.find((t) => s / t <= 10) || 86400000;
    const first = Math.ceil(x0 / step) * step;
    let k = 0;
    for (let t = first; t <= x1; t += step, k++) {
      let tk = ticks[k];
      if (!tk) {
        tk = { el: document.createElement('span'), last: {} };
        tk.el.className = 'tl-tick';
        axis.appendChild(tk.el);
        ticks.push(tk);
      }
      const x = `${LABEL_W + Math.round((t - x0) * scale)}`;
      if (tk.last.x !== x) {
        tk.last.x = x;
        tk.el.style.transform = `translateX(${x}px)`;
      }
      const text = fmtClock(t);
      if (tk.last.text !== text) {
        tk.last.text = text;
        tk.el.textContent = text;
      }
      tk.el.hidden = false;
    }
    for (; k < ticks.length; k++) ticks[k].el.hidden = true;
    nowLine.style.transform = `translateX(${LABEL_W + Math.round((now - x0) * scale)}px)`;
    nowLine.title = `Now: ${fmtClock(now)}`;
  }

  function render() {
    frame = 0;
    if (!shown()) return;
    const t0 = performance.now();
    const now = Date.now();
    const recs = rowOrder();
    const width = scroller.clientWidth;
    const trackW = Math.max(100, width - LABEL_W - 8);
    const s = span(now);
    const x0 = now - s * PAST;
    const x1 = x0 + s;
    const scale = trackW / s;
    drawAxis(now, x0, x1, scale);

    const top = Math.max(0, scroller.scrollTop - axis.offsetHeight);
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(recs.length, Math.ceil((top + scroller.clientHeight) / ROW_H) + OVERSCAN);
    const keep = new Set();
    for (let i = first; i < last; i++) keep.add(recs[i].id);
    // Rows that scrolled out are reused for the printers that scrolled in (no new nodes).
    const spare = [];
    for (const [id, row] of rows) {
      if (!keep.has(id)) {
        spare.push(row);
        rows.delete(id);
      }
    }
    stats.bars = 0;
    for (let i = first; i < last; i++) {
      const rec = recs[i];
      let row = rows.get(rec.id);
      if (!row) {
        row = spare.pop();
        if (row) {
          row.el.dataset.printerId = rec.id;
          row.last = {};
        } else {
          row = makeRow(rec.id);
          body.appendChild(row.el);
        }
        rows.set(rec.id, row);
      }
      drawRow(row, rec, i, now, x0, x1, scale, trackW);
    }
    for (const row of spare) row.el.remove();
    emptyEl.hidden = recs.length > 0;
    renderSummary(recs.length);
    const ms = performance.now() - t0;
    stats.draws++;
    stats.totalMs += ms;
    stats.maxMs = Math.max(stats.maxMs, ms);
    stats.rows = rows.size;
  }

  function renderSummary(n) {
    let jobsPlanned = 0;
    for (const list of planned.values()) jobsPlanned += list.length;
    const parts = [`${n} printer${n === 1 ? '' : 's'}`, `${jobsPlanned} planned job${jobsPlanned === 1 ? '' : 's'}`];
    if (planAt) parts.push(`plan of ${fmtClock(planAt)}`);
    const text = parts.join(' · ');
    if (summary.textContent !== text) summary.textContent = text;
  }

  function renderWaiting() {
    if (!waiting.length) {
      waitingEl.hidden = true;
      return;
    }
    const by = new Map();
    for (const w of waiting) {
      const r = w.waiting || 'not placed';
      by.set(r, (by.get(r) || 0) + 1);
    }
    const top = Array.from(by).sort((a, b) => b[1] - a[1]);
    const shownReasons = top.slice(0, 3).map(([r, n]) => `${n} × ${r}`);
    if (top.length > 3) shownReasons.push(`${top.length - 3} more reasons`);
    waitingEl.textContent = `${waiting.length} job${waiting.length === 1 ? '' : 's'} not on the timeline: ${shownReasons.join('; ')}`;
    waitingEl.title = top.map(([r, n]) => `${n} × ${r}`).join('\n');
    waitingEl.hidden = false;
  }

  function draw() {
    if (!frame && shown()) frame = requestAnimationFrame(render);
  }

  scroller.addEventListener('scroll', draw, { passive: true });
  window.addEventListener('resize', draw);
  rangeSel.addEventListener('change', draw);
  // The window slides with the clock, and running bars grow: once a second is enough.
  setInterval(draw, 1000);
  farm.listeners.push(() => {
    if (shown()) draw();
  });

  farm.registerView('timeline', {
    show() {
      view.hidden = false;
      draw();
      poll.poke();
    },
    hide() {
      for (const row of rows.values()) row.el.remove();
      rows.clear();
    },
  });
  farm.timeline = { stats, loadPlan, render };
})();
