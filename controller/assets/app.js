// Print farm dashboard: the farm grid, the job queue and the live stream (the default view).
// Shared helpers are in core.js.
//
// Data flow: API events only update the in-memory model and mark things dirty;
// one requestAnimationFrame callback (flush) then touches the DOM, once per frame,
// and only for what changed. Every printer card and every job row is created once
// (keyed by id) and updated in place; each rendered value is cached so that an
// unchanged field never causes a DOM write.
'use strict';

(() => {
  const farm = window.farm;
  const { api, toast, confirmAction, reconcile, cmpId, fmtDur, fmtAgo, fmtClock, fmtTemp, pct } = farm;
  const queue = farm.queue;

  const STATE_LABEL = {
    busy: 'Printing',
    idle: 'Idle',
    paused: 'Paused',
    error: 'Error',
    awaiting_clear: 'Clear bed',
    maintenance: 'Maintenance',
    offline: 'Offline',
  };
  // Order and wording of the header summary ("12 printers · 8 printing · …").
  const COUNT_ORDER = [
    ['busy', 'printing'],
    ['paused', 'paused'],
    ['awaiting_clear', 'awaiting clear'],
    ['error', 'error'],
    ['maintenance', 'maintenance'],
    ['idle', 'idle'],
    ['offline', 'offline'],
  ];
  const HEATING_DELTA = 10; // °C below target that counts as "still heating"

  // ---------------------------------------------------------------- DOM refs
  const $ = farm.$;
  const grid = $('#grid');
  const gridEmpty = $('#grid-empty');
  const filterStatus = $('#filter-status');
  const countsEl = $('#counts');
  const filterInput = $('#filter');
  const stateFilter = $('#state-filter');

  // ---------------------------------------------------------------- model
  /** id -> {id, d: printer data, el, f: field elements, last: rendered cache, temps: Map} */
  const printers = farm.printers;
  /** id -> Job */
  const jobs = farm.jobs;

  const dirtyPrinters = new Set();
  const pendingRemovals = [];
  let gridOrderDirty = false;
  let countsDirty = true;
  let filterDirty = false;
  let frame = 0;

  let filterText = '';
  let filterState = '';

  function schedule() {
    if (!frame) frame = requestAnimationFrame(flush);
  }

  function newRec(id, d) {
    return { id, d, el: null, f: null, last: {}, temps: new Map(), tempKey: null, visible: true };
  }

  function jobIdOf(d) {
    return (d.job && d.job.job_id) || d.current_job_id || null;
  }

  function onSnapshot(snap) {
    const seen = new Set();
    for (const p of snap.printers || []) {
      if (!p || typeof p.id !== 'string') continue;
      seen.add(p.id);
      const rec = printers.get(p.id);
      if (rec) {
        rec.d = p;
      } else {
        printers.set(p.id, newRec(p.id, p));
        gridOrderDirty = true;
      }
      dirtyPrinters.add(p.id);
    }
    for (const [id, rec] of printers) {
      if (!seen.has(id)) {
        printers.delete(id);
        dirtyPrinters.delete(id);
        if (rec.el) pendingRemovals.push(rec.el);
        gridOrderDirty = true;
      }
    }
    jobs.clear();
    for (const j of snap.jobs || []) {
      if (j && typeof j.id === 'string') jobs.set(j.id, j);
    }
    queue.all();
    countsDirty = true;
    schedule();
  }

  function onPrinter(diff) {
    if (!diff || typeof diff.id !== 'string') return;
    let rec = printers.get(diff.id);
    if (!rec) {
      rec = newRec(diff.id, Object.assign({}, diff));
      printers.set(diff.id, rec);
      gridOrderDirty = true;
      countsDirty = true;
    } else {
      if ('state' in diff && diff.state !== rec.d.state) countsDirty = true;
      const before = jobIdOf(rec.d);
      Object.assign(rec.d, diff);
      // The queue row of a running job shows the printer's live progress/ETA.
      if (before) queue.touch(before);
    }
    const now = jobIdOf(rec.d);
    if (now) queue.touch(now);
    dirtyPrinters.add(diff.id);
    schedule();
  }

  function onJob(job) {
    if (!job || typeof job.id !== 'string') return;
    const old = jobs.get(job.id);
    jobs.set(job.id, job);
    queue.touch(job.id);
    if (
      !old ||
      old.state !== job.state ||
      old.priority !== job.priority ||
      old.created_at !== job.created_at ||
      old.finished_at !== job.finished_at
    ) {
      queue.reorder();
    }
    // Cards show the job name: refresh the printer(s) involved.
    if (job.printer_id && printers.has(job.printer_id)) dirtyPrinters.add(job.printer_id);
    if (old && old.printer_id && old.printer_id !== job.printer_id && printers.has(old.printer_id)) {
      dirtyPrinters.add(old.printer_id);
    }
    schedule();
  }

  function onJobRemoved(msg) {
    if (!msg || typeof msg.id !== 'string') return;
    const old = jobs.get(msg.id);
    jobs.delete(msg.id);
    if (old && old.printer_id && printers.has(old.printer_id)) dirtyPrinters.add(old.printer_id);
    queue.reorder();
    schedule();
  }

  // ---------------------------------------------------------------- printer cards
  const cardTpl = document.createElement('template');
  cardTpl.innerHTML = `<article class="printer">
  <div class="head"><h3 class="name"><span class="label"></span> <span class="pid"></span></h3><span class="state"></span></div>
  <p class="sub activity"></p>
  <p class="job-name"></p>
  <div class="progress"><div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-label="Progress"><i></i></div><span class="progress-text"></span></div>
  <p class="meta"><span class="layer"></span><span class="sep"> · </span><span class="eta"></span></p>
  <ul class="temps" aria-label="Temperatures"></ul>
  <ul class="trays" aria-label="AMS trays" hidden></ul>
  <p class="message" role="note"></p>
  <p class="fw-note" role="status"></p>
  <div class="actions needs-operator">
    <button type="button" data-action="pause">Pause</button>
    <button type="button" data-action="resume">Resume</button>
    <button type="button" data-action="cancel">Cancel</button>
    <button type="button" data-action="clear" class="clear">Bed cleared</button>
    <button type="button" data-action="emergency_stop" class="estop">E-stop</button>
  </div>
</article>`;

  function createCard(rec) {
    const el = cardTpl.content.firstElementChild.cloneNode(true);
    el.dataset.printerId = rec.id;
    const q = (s) => el.querySelector(s);
    rec.el = el;
    rec.f = {
      label: q('.label'),
      pid: q('.pid'),
      state: q('.state'),
      activity: q('.activity'),
      jobName: q('.job-name'),
      progress: q('.progress'),
      bar: q('.bar'),
      fill: q('.bar > i'),
      pctText: q('.progress-text'),
      meta: q('.meta'),
      layer: q('.layer'),
      sep: q('.sep'),
      eta: q('.eta'),
      temps: q('.temps'),
      trays: q('.trays'),
      message: q('.message'),
      note: q('.fw-note'),
      btn: {
        pause: q('[data-action="pause"]'),
        resume: q('[data-action="resume"]'),
        cancel: q('[data-action="cancel"]'),
        clear: q('[data-action="clear"]'),
        emergency_stop: q('[data-action="emergency_stop"]'),
      },
    };
  }

  // Write helpers: only touch the DOM when the value differs from what was rendered.
  function setText(rec, key, el, value) {
    if (rec.last[key] !== value) {
      rec.last[key] = value;
      el.textContent = value;
    }
  }
  function setHidden(rec, key, el, hidden) {
    if (rec.last[key] !== hidden) {
      rec.last[key] = hidden;
      el.hidden = hidden;
    }
  }

  function printerJobName(d) {
    const jid = jobIdOf(d);
    if (!jid) return '';
    const j = jobs.get(jid);
    return (j && j.name) || jid;
  }

  function activityText(d, state) {
    if (state === 'offline' || d.online === false) {
      const seen = d.last_seen ? fmtAgo(d.last_seen) : '';
      return seen ? `Offline · last seen ${seen}` : 'Offline · never seen';
    }
    const parts = [];
    if (d.activity) parts.push(d.activity);
    if (d.auto_eject) parts.push('auto-eject');
    if (d.agent && d.agent.outbox_pending > 0) parts.push(`${d.agent.outbox_pending} pending`);
    return parts.join(' · ');
  }

  function updateCard(rec) {
    const d = rec.d;
    const f = rec.f;
    const L = rec.last;
    const state = STATE_LABEL[d.state] ? d.state : d.state || 'offline';

    if (L.state !== state) {
      L.state = state;
      rec.el.dataset.state = state;
      f.state.textContent = STATE_LABEL[state] || state;
    }
    const name = d.name || d.id;
    if (L.name !== name) f.label.title = name;
    setText(rec, 'name', f.label, name);
    setText(rec, 'pid', f.pid, name === d.id ? '' : d.id);
    const offline = d.online === false;
    if (L.offline !== offline) {
      L.offline = offline;
      rec.el.classList.toggle('is-offline', offline);
    }
    setText(rec, 'activity', f.activity, activityText(d, state));
    if (d.agent) {
      const title = `agent ${d.agent.version || '?'} · ${d.agent.backend || '?'}`;
      if (L.title !== title) {
        L.title = title;
        f.activity.title = title;
      }
    }

    // Job name, progress, layer, ETA.
    const jname = printerJobName(d);
    setText(rec, 'job', f.jobName, jname);
    const jid = jobIdOf(d);
    const job = jid ? jobs.get(jid) : null;
    let p = d.job && d.job.progress != null ? d.job.progress : job ? job.progress : null;
    const pc = jid ? pct(p) : null;
    setHidden(rec, 'progHidden', f.progress, pc == null);
    if (pc != null && L.pct !== pc) {
      L.pct = pc;
      f.pctText.textContent = `${pc} %`;
      f.fill.style.transform = `scaleX(${pc / 100})`;
      f.bar.setAttribute('aria-valuenow', String(pc));
    }
    const dj = d.job;
    const layer =
      dj && dj.layer != null ? `Layer ${dj.layer}/${dj.layer_count != null ? dj.layer_count : '?'}` : '';
    const eta = dj && dj.eta_s != null && jid ? `ETA ${fmtDur(dj.eta_s)}` : '';
    setText(rec, 'layer', f.layer, layer);
    setText(rec, 'eta', f.eta, eta);
    setHidden(rec, 'sepHidden', f.sep, !(layer && eta));
    setHidden(rec, 'metaHidden', f.meta, !(layer || eta));

    // Heaters, keyed by name.
    const temps = Array.isArray(d.temps) ? d.temps : [];
    const key = temps.map((t) => t.name).join('\u0000');
    if (rec.tempKey !== key) {
      rec.tempKey = key;
      rec.temps.clear();
      f.temps.textContent = '';
      for (const t of temps) {
        const li = document.createElement('li');
        rec.temps.set(t.name, { li, text: null, heating: false });
        f.temps.appendChild(li);
      }
    }
    for (const t of temps) {
      const slot = rec.temps.get(t.name);
      const hasTarget = t.target != null && t.target > 0;
      const text = hasTarget
        ? `${t.name} ${fmtTemp(t.actual)}/${fmtTemp(t.target)} °C`
        : `${t.name} ${fmtTemp(t.actual)} °C`;
      if (slot.text !== text) {
        slot.text = text;
        slot.li.textContent = text;
      }
      const heating = hasTarget && Number.isFinite(t.actual) && t.target - t.actual > HEATING_DELTA;
      if (slot.heating !== heating) {
        slot.heating = heating;
        slot.li.classList.toggle('heating', heating);
      }
    }

    renderTrays(rec, Array.isArray(d.trays) ? d.trays : []);

    const msg = d.message || '';
    setText(rec, 'msg', f.message, msg);
    setHidden(rec, 'msgHidden', f.message, !msg);

    // The firmware's newest message (a prompt, a notification), with its time; the card's
    // tooltip holds the last few.
    const notes = d.firmware_messages || [];
    const lines = notes.map((n) => `${fmtClock(n.at)} ${n.text}`);
    const newest = lines.length ? lines[lines.length - 1] : '';
    setText(rec, 'note', f.note, newest);
    setHidden(rec, 'noteHidden', f.note, !newest);
    const all = lines.join('\n');
    if (rec.last.noteAll !== all) {
      rec.last.noteAll = all;
      f.note.title = all;
    }

    // Actions that make sense for the state.
    const b = f.btn;
    setHidden(rec, 'bPause', b.pause, state !== 'busy');
    setHidden(rec, 'bResume', b.resume, state !== 'paused');
    setHidden(rec, 'bCancel', b.cancel, state !== 'busy' && state !== 'paused');
    setHidden(rec, 'bClear', b.clear, state !== 'awaiting_clear');
    setHidden(rec, 'bStop', b.emergency_stop, state === 'offline');

    applyFilter(rec);
  }

  // A changer's trays (Bambu's AMS): a colour swatch, the material and the printer's own
  // remaining-% estimate per slot; rebuilt only when something in them changed.
  function trayLabel(slot) {
    if (slot < 128) return `${Math.floor(slot / 4) + 1}-${(slot % 4) + 1}`;
    if (slot < 254) return `HT${slot - 127}`;
    return 'Ext';
  }

  function renderTrays(rec, trays) {
    const key = JSON.stringify(trays);
    if (rec.last.trays === key) return;
    rec.last.trays = key;
    const ul = rec.f.trays;
    ul.textContent = '';
    ul.hidden = trays.length === 0;
    for (const t of trays) {
      const li = document.createElement('li');
      const sw = document.createElement('i');
      sw.className = 'swatch';
      if (t.material && t.colour) sw.style.background = t.colour;
      li.appendChild(sw);
      const pct = t.remain_pct != null ? ` ${t.remain_pct} %` : '';
      li.appendChild(document.createTextNode(`${trayLabel(t.slot)} ${t.material || 'empty'}${pct}`));
      li.classList.toggle('active', !!t.active);
      li.classList.toggle('empty', !t.material);
      li.title = t.material
        ? `tray ${t.slot}: ${t.material} ${t.colour || ''}${t.preset ? ` (${t.preset})` : ''}${pct ? `, about${pct} left (the printer's estimate)` : ''}${t.active ? ', feeding now' : ''}`
        : `tray ${t.slot}: empty`;
      ul.appendChild(li);
    }
  }

  function matchesFilter(rec) {
    const d = rec.d;
    if (filterState && (d.state || 'offline') !== filterState) return false;
    if (!filterText) return true;
    if (d.id.toLowerCase().includes(filterText)) return true;
    if (d.name && d.name.toLowerCase().includes(filterText)) return true;
    const jn = printerJobName(d);
    return !!jn && jn.toLowerCase().includes(filterText);
  }

  function applyFilter(rec) {
    const visible = matchesFilter(rec);
    if (rec.visible !== visible || rec.el.hidden === visible) {
      rec.visible = visible;
      rec.el.hidden = !visible;
    }
  }

  function renderCounts() {
    const by = Object.create(null);
    for (const rec of printers.values()) {
      const s = rec.d.state || 'offline';
      by[s] = (by[s] || 0) + 1;
    }
    const total = printers.size;
    const parts = [[null, `${total} printer${total === 1 ? '' : 's'}`]];
    for (const [s, label] of COUNT_ORDER) if (by[s]) parts.push([s, `${by[s]} ${label}`]);
    for (const s of Object.keys(by)) {
      if (!STATE_LABEL[s]) parts.push([s, `${by[s]} ${s}`]);
    }
    const text = parts.map((p) => p[1]).join(' · ');
    if (countsEl.textContent === text) return;
    const frag = document.createDocumentFragment();
    parts.forEach(([s, label], i) => {
      if (i) frag.appendChild(document.createTextNode(' · '));
      // State chips are buttons: a click filters the grid by that state.
      const span = document.createElement(s ? 'button' : 'span');
      span.className = 'c';
      if (s) {
        span.type = 'button';
        span.dataset.countState = s;
        span.title = `Show only ${STATE_LABEL[s] || s}`;
      }
      span.textContent = label;
      frag.appendChild(span);
    });
    countsEl.textContent = '';
    countsEl.appendChild(frag);
  }

  function renderFilterStatus() {
    const active = !!(filterText || filterState);
    let visible = 0;
    for (const rec of printers.values()) if (rec.visible) visible++;
    filterStatus.hidden = !active;
    if (active) filterStatus.textContent = `Showing ${visible} of ${printers.size} printers`;
    gridEmpty.hidden = visible > 0;
    gridEmpty.textContent = printers.size ? 'No printers match the filter.' : 'No printers yet.';
  }

  // ---------------------------------------------------------------- frame
  function flush() {
    frame = 0;
    for (const el of pendingRemovals) el.remove();
    pendingRemovals.length = 0;

    if (gridOrderDirty) {
      gridOrderDirty = false;
      const sorted = Array.from(printers.values()).sort((a, b) => cmpId(a.id, b.id));
      farm.sortedPrinters = sorted;
      let created = false;
      for (const rec of sorted) {
        if (!rec.el) {
          createCard(rec);
          dirtyPrinters.add(rec.id);
          created = true;
        }
      }
      if (created && !grid.firstElementChild) {
        const frag = document.createDocumentFragment();
        for (const rec of sorted) frag.appendChild(rec.el);
        grid.appendChild(frag);
      } else {
        reconcile(grid, sorted.map((r) => r.el));
      }
      countsDirty = true;
    }

    const touched = dirtyPrinters.size > 0 || filterDirty;
    for (const id of dirtyPrinters) {
      const rec = printers.get(id);
      if (rec && rec.el) updateCard(rec);
    }
    dirtyPrinters.clear();
    if (filterDirty) {
      filterDirty = false;
      for (const rec of printers.values()) if (rec.el) applyFilter(rec);
    }
    const states = countsDirty;
    if (countsDirty) {
      countsDirty = false;
      renderCounts();
    }
    if (touched) renderFilterStatus();
    queue.render();
    for (const fn of farm.listeners) fn(states);
  }

  // ---------------------------------------------------------------- operator actions
  const ACTION_TEXT = {
    pause: 'Pause',
    resume: 'Resume',
    cancel: 'Cancel print',
    emergency_stop: 'Emergency stop',
    clear: 'Bed cleared',
  };

  async function printerAction(id, action, btn) {
    const rec = printers.get(id);
    const name = rec ? rec.d.name || id : id;
    if (action === 'cancel') {
      const ok = await confirmAction('Cancel print?', `Cancel the print on ${name}? This cannot be undone.`, 'Cancel print');
      if (!ok) return;
    } else if (action === 'emergency_stop') {
      const ok = await confirmAction(
        'Emergency stop?',
        `Emergency stop ${name}? The printer halts immediately and will need attention before it can print again.`,
        'E-stop',
      );
      if (!ok) return;
    }
    const path =
      action === 'clear'
        ? `/printers/${encodeURIComponent(id)}/clear`
        : `/printers/${encodeURIComponent(id)}/commands`;
    btn.disabled = true;
    try {
      await api('POST', path, action === 'clear' ? { json: {} } : { json: { kind: action } });
      toast('ok', `${ACTION_TEXT[action]} sent to ${name}`, '');
    } catch (e) {
      if (e.status !== 401) toast('error', `${ACTION_TEXT[action]} failed on ${name}: `, e.message);
    } finally {
      btn.disabled = false;
    }
  }

  grid.addEventListener('click', (e) => {
    const btn = e.target.closest('button[data-action]');
    if (!btn || btn.disabled) return;
    const card = btn.closest('article[data-printer-id]');
    if (card) printerAction(card.dataset.printerId, btn.dataset.action, btn);
  });

  // ---------------------------------------------------------------- filters
  filterInput.addEventListener('input', () => {
    filterText = filterInput.value.trim().toLowerCase();
    filterDirty = true;
    schedule();
  });
  stateFilter.addEventListener('change', () => {
    filterState = stateFilter.value;
    filterDirty = true;
    schedule();
  });
  // A click on a count chip filters by that state.
  countsEl.addEventListener('click', (e) => {
    const chip = e.target.closest('[data-count-state]');
    if (!chip) return;
    const s = chip.dataset.countState;
    stateFilter.value = stateFilter.value === s ? '' : s;
    stateFilter.dispatchEvent(new Event('change'));
  });

  // "last seen … ago" on offline cards ages without events: refresh it now and then.
  setInterval(() => {
    let any = false;
    for (const rec of printers.values()) {
      if (rec.d.state === 'offline' || rec.d.online === false) {
        dirtyPrinters.add(rec.id);
        any = true;
      }
    }
    if (any) schedule();
  }, 30000);

  farm.registerView('grid', {});
  farm.STATE_LABEL = STATE_LABEL;
  farm.model = { onSnapshot, onPrinter, onJob, onJobRemoved };
  farm.onJob = onJob;
  /** The grid's filter, shared with the timeline. */
  farm.filter = { matches: (rec) => matchesFilter(rec) };
})();
