// Print farm live dashboard. Plain ES2020, no build step, no dependencies.
//
// Data flow: API events only update the in-memory model and mark things dirty;
// one requestAnimationFrame callback (flush) then touches the DOM, once per frame,
// and only for what changed. Every printer card and every job row is created once
// (keyed by id) and updated in place; each rendered value is cached so that an
// unchanged field never causes a DOM write.
'use strict';

(() => {
  const API = '/api/v1';

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
  const JOB_LABEL = {
    queued: 'Queued',
    assigned: 'Assigned',
    transferring: 'Sending',
    printing: 'Printing',
    paused: 'Paused',
    completed: 'Done',
    failed: 'Failed',
    cancelled: 'Cancelled',
  };
  const ACTIVE_JOB = new Set(['assigned', 'transferring', 'printing', 'paused']);
  const FINISHED_JOB = new Set(['completed', 'failed', 'cancelled']);
  const CANCELLABLE_JOB = new Set(['queued', 'assigned']);
  const RECENT_MAX = 20;
  const QUEUE_MAX_ROWS = 2000; // keep the queue table bounded on huge farms
  const HEATING_DELTA = 10; // °C below target that counts as "still heating"
  const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });
  const cmpId = (a, b) => collator.compare(a, b) || (a < b ? -1 : a > b ? 1 : 0);

  // ---------------------------------------------------------------- DOM refs
  const $ = (sel) => document.querySelector(sel);
  const grid = $('#grid');
  const gridEmpty = $('#grid-empty');
  const filterStatus = $('#filter-status');
  const liveEl = $('#live');
  const countsEl = $('#counts');
  const filterInput = $('#filter');
  const stateFilter = $('#state-filter');
  const queueBody = $('#queue tbody');
  const queueEmpty = $('#queue-empty');
  const queueCount = $('#queue-count');
  const recentBody = $('#recent tbody');
  const recentCount = $('#recent-count');
  const versionEl = $('#version');
  const toasts = $('#toasts');
  const loginDlg = $('#login');
  const loginForm = $('#login-form');
  const loginToken = $('#login-token');
  const loginError = $('#login-error');
  const confirmDlg = $('#confirm');
  const confirmText = $('#confirm-text');
  const confirmTitle = $('#confirm-title');
  const confirmOk = confirmDlg.querySelector('.confirm-ok');
  const uploadForm = $('#upload');
  const uploadFile = $('#upload-file');
  const uploadCopies = $('#upload-copies');
  const uploadSubmit = $('#upload-submit');

  // ---------------------------------------------------------------- model
  /** id -> {id, d: printer data, el, f: field elements, last: rendered cache, temps: Map} */
  const printers = new Map();
  /** id -> Job */
  const jobs = new Map();
  /** id -> {tr, f, last, where: 'queue' | 'recent'} */
  const jobRows = new Map();

  const dirtyPrinters = new Set();
  const dirtyJobs = new Set();
  const pendingRemovals = [];
  let gridOrderDirty = false;
  let jobOrderDirty = false;
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
    for (const id of jobs.keys()) dirtyJobs.add(id);
    jobOrderDirty = true;
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
      if (before && jobRows.has(before)) dirtyJobs.add(before);
    }
    const now = jobIdOf(rec.d);
    if (now && jobRows.has(now)) dirtyJobs.add(now);
    dirtyPrinters.add(diff.id);
    schedule();
  }

  function onJob(job) {
    if (!job || typeof job.id !== 'string') return;
    const old = jobs.get(job.id);
    jobs.set(job.id, job);
    dirtyJobs.add(job.id);
    if (
      !old ||
      old.state !== job.state ||
      old.priority !== job.priority ||
      old.created_at !== job.created_at ||
      old.finished_at !== job.finished_at
    ) {
      jobOrderDirty = true;
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
    jobOrderDirty = true;
    schedule();
  }

  // ---------------------------------------------------------------- formatting
  function fmtDur(s) {
    if (s == null || !Number.isFinite(s) || s < 0) return '';
    if (s < 60) return `${Math.round(s)} s`;
    const totalMin = Math.round(s / 60);
    if (totalMin < 60) return `${totalMin} min`;
    const h = Math.floor(totalMin / 60);
    const m = totalMin % 60;
    if (h >= 48) return `${Math.floor(h / 24)} d ${h % 24} h`;
    return m ? `${h} h ${m} min` : `${h} h`;
  }

  function fmtAgo(iso) {
    const t = Date.parse(iso);
    if (!Number.isFinite(t)) return '';
    const s = Math.max(0, (Date.now() - t) / 1000);
    if (s < 60) return 'just now';
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 172800) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }

  function fmtClock(iso) {
    const t = Date.parse(iso);
    if (!Number.isFinite(t)) return '';
    const d = new Date(t);
    const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    if (d.toDateString() === new Date().toDateString()) return time;
    return `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
  }

  function fmtTemp(v) {
    return Number.isFinite(v) ? String(Math.round(v)) : '–';
  }

  function pct(p) {
    if (p == null || !Number.isFinite(p)) return null;
    return Math.round(Math.min(1, Math.max(0, p)) * 100);
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
  <p class="message" role="note"></p>
  <div class="actions">
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
      message: q('.message'),
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

    const msg = d.message || '';
    setText(rec, 'msg', f.message, msg);
    setHidden(rec, 'msgHidden', f.message, !msg);

    // Actions that make sense for the state.
    const b = f.btn;
    setHidden(rec, 'bPause', b.pause, state !== 'busy');
    setHidden(rec, 'bResume', b.resume, state !== 'paused');
    setHidden(rec, 'bCancel', b.cancel, state !== 'busy' && state !== 'paused');
    setHidden(rec, 'bClear', b.clear, state !== 'awaiting_clear');
    setHidden(rec, 'bStop', b.emergency_stop, state === 'offline');

    applyFilter(rec);
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

  // Make `container`'s children exactly `els`, in order, moving as few nodes as possible.
  function reconcile(container, els) {
    let cur = container.firstElementChild;
    for (const el of els) {
      if (el === cur) {
        cur = cur.nextElementSibling;
      } else {
        container.insertBefore(el, cur);
      }
    }
    while (cur) {
      const next = cur.nextElementSibling;
      cur.remove();
      cur = next;
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

  // ---------------------------------------------------------------- job rows
  const queueTpl = document.createElement('template');
  queueTpl.innerHTML =
    '<tr><td class="col-name"><span class="jname"></span><small class="jid"></small></td>' +
    '<td><span class="jstate"></span></td><td class="col-printer"></td>' +
    '<td class="col-progress"></td><td class="col-time"></td>' +
    '<td class="col-act"><button type="button" data-action="cancel-job">Cancel</button></td></tr>';
  const recentTpl = document.createElement('template');
  recentTpl.innerHTML =
    '<tr><td class="col-name"><span class="jname"></span><small class="jid"></small></td>' +
    '<td><span class="jstate"></span></td><td class="col-printer"></td>' +
    '<td class="col-time"></td><td class="col-reason"></td></tr>';

  function createRow(id, where) {
    const tpl = where === 'queue' ? queueTpl : recentTpl;
    const tr = tpl.content.firstElementChild.cloneNode(true);
    tr.dataset.jobId = id;
    const q = (s) => tr.querySelector(s);
    const row = {
      tr,
      where,
      last: {},
      f: {
        name: q('.jname'),
        id: q('.jid'),
        state: q('.jstate'),
        printer: q('.col-printer'),
        progress: q('.col-progress'),
        time: q('.col-time'),
        reason: q('.col-reason'),
        cancel: q('[data-action="cancel-job"]'),
      },
    };
    jobRows.set(id, row);
    return row;
  }

  function printerName(pid) {
    if (!pid) return '';
    const rec = printers.get(pid);
    return (rec && rec.d.name) || pid;
  }

  function updateRow(row, job) {
    const f = row.f;
    const L = row.last;
    const set = (key, el, value) => {
      if (el && L[key] !== value) {
        L[key] = value;
        el.textContent = value;
      }
    };
    if (L.state !== job.state) {
      L.state = job.state;
      row.tr.dataset.state = job.state;
      f.state.textContent = JOB_LABEL[job.state] || job.state;
    }
    set('name', f.name, job.name || job.id);
    set('id', f.id, job.attempts > 1 ? `${job.id} · attempt ${job.attempts}` : job.id);
    const pname = printerName(job.printer_id);
    if (L.printer !== (pname || '—')) f.printer.title = pname;
    set('printer', f.printer, pname || '—');
    if (row.where === 'queue') {
      // Live numbers come from the printer when it is running this job.
      const prec = job.printer_id ? printers.get(job.printer_id) : null;
      const live = prec && prec.d.job && prec.d.job.job_id === job.id ? prec.d.job : null;
      const pc = pct(live && live.progress != null ? live.progress : job.progress);
      set('progress', f.progress, ACTIVE_JOB.has(job.state) && pc != null ? `${pc} %` : '');
      let time = '';
      if (live && live.eta_s != null) time = fmtDur(live.eta_s);
      else if (job.estimated_s != null) time = `≈ ${fmtDur(job.estimated_s)}`;
      set('time', f.time, time);
      const canCancel = CANCELLABLE_JOB.has(job.state);
      if (L.cancel !== canCancel) {
        L.cancel = canCancel;
        f.cancel.hidden = !canCancel;
      }
    } else {
      set('time', f.time, fmtClock(job.finished_at));
      set('reason', f.reason, job.failure_reason || '');
    }
  }

  const timeKey = (iso) => {
    const t = Date.parse(iso);
    return Number.isFinite(t) ? t : 0;
  };

  function renderJobs() {
    if (jobOrderDirty) {
      jobOrderDirty = false;
      const active = [];
      const queued = [];
      const finished = [];
      for (const j of jobs.values()) {
        if (ACTIVE_JOB.has(j.state)) active.push({ j, t: timeKey(j.created_at) });
        else if (FINISHED_JOB.has(j.state)) finished.push({ j, t: timeKey(j.finished_at || j.created_at) });
        else queued.push({ j, t: timeKey(j.created_at) });
      }
      active.sort((a, b) => a.t - b.t || cmpId(a.j.id, b.j.id));
      // Higher priority first, then oldest first.
      queued.sort(
        (a, b) => (b.j.priority || 0) - (a.j.priority || 0) || a.t - b.t || cmpId(a.j.id, b.j.id),
      );
      finished.sort((a, b) => b.t - a.t || cmpId(b.j.id, a.j.id));

      const queueAll = active.concat(queued);
      const queueList = queueAll.slice(0, QUEUE_MAX_ROWS);
      const recentList = finished.slice(0, RECENT_MAX);
      const want = new Map();
      for (const x of queueList) want.set(x.j.id, 'queue');
      for (const x of recentList) want.set(x.j.id, 'recent');
      for (const [id, row] of jobRows) {
        if (want.get(id) !== row.where) {
          row.tr.remove();
          jobRows.delete(id);
        }
      }
      const rowsFor = (list, where) =>
        list.map((x) => {
          let row = jobRows.get(x.j.id);
          if (!row) {
            row = createRow(x.j.id, where);
            dirtyJobs.add(x.j.id);
          }
          return row.tr;
        });
      reconcile(queueBody, rowsFor(queueList, 'queue'));
      reconcile(recentBody, rowsFor(recentList, 'recent'));

      const hiddenCount = queueAll.length - queueList.length;
      let qc = `${active.length} active · ${queued.length} queued`;
      if (hiddenCount > 0) qc += ` (${hiddenCount} not listed)`;
      queueCount.textContent = `(${qc})`;
      queueEmpty.hidden = queueAll.length > 0;
      recentCount.textContent = `(${recentList.length})`;
    }
    for (const id of dirtyJobs) {
      const row = jobRows.get(id);
      const job = jobs.get(id);
      if (row && job) updateRow(row, job);
    }
    dirtyJobs.clear();
  }

  // ---------------------------------------------------------------- frame
  function flush() {
    frame = 0;
    for (const el of pendingRemovals) el.remove();
    pendingRemovals.length = 0;

    if (gridOrderDirty) {
      gridOrderDirty = false;
      const sorted = Array.from(printers.values()).sort((a, b) => cmpId(a.id, b.id));
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
    if (countsDirty) {
      countsDirty = false;
      renderCounts();
    }
    if (touched) renderFilterStatus();
    renderJobs();
  }

  // ---------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(message, status, problem) {
      super(message);
      this.status = status;
      this.problem = problem;
    }
  }

  async function api(method, path, opts = {}) {
    const headers = Object.assign({ Accept: 'application/json, application/problem+json' }, opts.headers);
    const init = { method, credentials: 'same-origin', headers };
    if (opts.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(opts.json);
    } else if (opts.body !== undefined) {
      init.body = opts.body;
    }
    let res;
    try {
      res = await fetch(API + path, init);
    } catch (e) {
      throw new ApiError(`Network error: ${e.message || e}`, 0, null);
    }
    let data = null;
    const ct = res.headers.get('content-type') || '';
    if (ct.includes('json')) {
      try {
        data = await res.json();
      } catch (_) {
        data = null;
      }
    } else if (!res.ok) {
      try {
        const t = (await res.text()).trim();
        if (t) data = { detail: t.slice(0, 300) };
      } catch (_) {
        /* ignore */
      }
    }
    if (!res.ok) {
      const msg = (data && (data.detail || data.title)) || `${res.status} ${res.statusText || 'error'}`;
      if (res.status === 401 && path !== '/session') showLogin();
      throw new ApiError(msg, res.status, data);
    }
    return data;
  }

  // ---------------------------------------------------------------- live stream
  let es = null;
  let retryTimer = 0;
  let backoff = 1000;
  let everLive = false;
  let authNeeded = false;

  function setLive(status) {
    const text = {
      live: 'live',
      connecting: 'connecting…',
      reconnecting: 'reconnecting…',
      auth: 'signed out',
    }[status];
    if (liveEl.dataset.status !== status) {
      liveEl.dataset.status = status;
      liveEl.textContent = text;
      document.body.classList.toggle('stale', status !== 'live');
    }
  }

  function parse(ev) {
    try {
      return JSON.parse(ev.data);
    } catch (e) {
      console.warn('bad event data', ev.type, e);
      return null;
    }
  }

  function disconnect() {
    clearTimeout(retryTimer);
    retryTimer = 0;
    if (es) {
      es.close();
      es = null;
    }
  }

  function connect() {
    disconnect();
    authNeeded = false;
    setLive(everLive ? 'reconnecting' : 'connecting');
    const src = new EventSource(API + '/stream', { withCredentials: true });
    es = src;
    src.addEventListener('snapshot', (ev) => {
      const d = parse(ev);
      if (!d) return;
      onSnapshot(d);
      everLive = true;
      backoff = 1000;
      setLive('live');
    });
    src.addEventListener('printer', (ev) => onPrinter(parse(ev)));
    src.addEventListener('job', (ev) => onJob(parse(ev)));
    src.addEventListener('job_removed', (ev) => onJobRemoved(parse(ev)));
    src.onerror = () => {
      if (es !== src) return;
      setLive('reconnecting');
      if (src.readyState === EventSource.CLOSED) {
        // The browser gave up (HTTP error or wrong content type): find out why.
        es = null;
        probeStream();
      }
      // Otherwise EventSource is retrying by itself.
    };
  }

  async function probeStream() {
    const ctrl = new AbortController();
    try {
      const res = await fetch(API + '/stream', {
        credentials: 'same-origin',
        signal: ctrl.signal,
        headers: { Accept: 'text/event-stream' },
      });
      ctrl.abort();
      if (res.status === 401) {
        showLogin();
        return;
      }
    } catch (_) {
      /* network down: retry below */
    }
    if (authNeeded) return;
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 30000);
  }

  async function loadHealth() {
    try {
      const h = await api('GET', '/health');
      if (h) {
        const parts = [];
        if (h.version) parts.push(`controller v${h.version}`);
        if (h.broker) parts.push(`broker: ${h.broker}`);
        if (h.uptime_s != null) parts.push(`up ${fmtDur(h.uptime_s)}`);
        versionEl.textContent = parts.join(' · ');
      }
      return true;
    } catch (e) {
      return e.status !== 401;
    }
  }

  async function start() {
    const ok = await loadHealth();
    if (ok && !authNeeded) connect();
  }

  // ---------------------------------------------------------------- login
  function showLogin(message) {
    authNeeded = true;
    disconnect();
    setLive('auth');
    loginError.hidden = !message;
    loginError.textContent = message || '';
    if (!loginDlg.open) {
      loginToken.value = '';
      loginDlg.showModal();
    }
    loginToken.focus();
  }

  async function login(token) {
    try {
      await api('POST', '/session', { json: { token } });
    } catch (e) {
      showLogin(e.message || 'Sign-in failed');
      return false;
    }
    authNeeded = false;
    if (loginDlg.open) loginDlg.close();
    loginError.hidden = true;
    start();
    return true;
  }

  loginForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const token = loginToken.value.trim();
    if (!token) return;
    const btn = $('#login-submit');
    btn.disabled = true;
    try {
      await login(token);
    } finally {
      btn.disabled = false;
    }
  });
  // Escape would close the dialog while still signed out: keep it open.
  loginDlg.addEventListener('cancel', (e) => {
    if (authNeeded) e.preventDefault();
  });

  // ---------------------------------------------------------------- toasts & confirm
  function toast(kind, title, detail) {
    const el = document.createElement('div');
    el.className = `toast ${kind}`;
    el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    const p = document.createElement('p');
    const strong = document.createElement('strong');
    strong.textContent = title;
    p.appendChild(strong);
    if (detail) p.appendChild(document.createTextNode(detail));
    const close = document.createElement('button');
    close.type = 'button';
    close.textContent = '×';
    close.setAttribute('aria-label', 'Dismiss');
    close.addEventListener('click', () => el.remove());
    el.append(p, close);
    toasts.appendChild(el);
    while (toasts.children.length > 5) toasts.firstElementChild.remove();
    setTimeout(() => el.remove(), kind === 'error' ? 15000 : 5000);
  }

  function confirmAction(title, text, okLabel) {
    if (confirmDlg.open) return Promise.resolve(false);
    return new Promise((resolve) => {
      confirmTitle.textContent = title;
      confirmText.textContent = text;
      confirmOk.textContent = okLabel;
      confirmDlg.returnValue = '';
      confirmDlg.addEventListener('close', () => resolve(confirmDlg.returnValue === 'ok'), { once: true });
      confirmDlg.showModal();
    });
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

  queueBody.addEventListener('click', async (e) => {
    const btn = e.target.closest('button[data-action="cancel-job"]');
    if (!btn || btn.disabled) return;
    const tr = btn.closest('tr[data-job-id]');
    if (!tr) return;
    const id = tr.dataset.jobId;
    const job = jobs.get(id);
    const name = job ? job.name || id : id;
    const ok = await confirmAction('Cancel job?', `Remove ${name} (${id}) from the queue?`, 'Cancel job');
    if (!ok) return;
    btn.disabled = true;
    try {
      await api('POST', `/jobs/${encodeURIComponent(id)}/cancel`, { json: {} });
      toast('ok', `Cancelled ${name}`, '');
    } catch (e2) {
      if (e2.status !== 401) toast('error', `Cancel failed for ${name}: `, e2.message);
    } finally {
      btn.disabled = false;
    }
  });

  uploadForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const file = uploadFile.files && uploadFile.files[0];
    if (!file) {
      toast('error', 'Add job: ', 'choose a file first');
      return;
    }
    const copies = Math.max(1, Math.min(1000, parseInt(uploadCopies.value, 10) || 1));
    uploadSubmit.disabled = true;
    uploadSubmit.textContent = 'Uploading…';
    try {
      const res = await api(
        'POST',
        `/jobs?name=${encodeURIComponent(file.name)}&copies=${copies}`,
        { body: file, headers: { 'Content-Type': 'application/octet-stream' } },
      );
      const added = (res && Array.isArray(res.jobs) && res.jobs) || [];
      for (const j of added) onJob(j);
      toast('ok', `Added ${file.name}`, ` — ${added.length || copies} job${(added.length || copies) === 1 ? '' : 's'} queued`);
      uploadForm.reset();
    } catch (e2) {
      if (e2.status !== 401) toast('error', `Upload of ${file.name} failed: `, e2.message);
    } finally {
      uploadSubmit.disabled = false;
      uploadSubmit.textContent = 'Upload';
    }
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

  // ---------------------------------------------------------------- boot
  // A link like http://farm/#token=XYZ signs in, then the token is removed from the URL.
  function tokenFromHash() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (!m) return null;
    let token = m[1];
    try {
      token = decodeURIComponent(token);
    } catch (_) {
      /* keep raw */
    }
    history.replaceState(null, '', location.pathname + location.search);
    return token;
  }
  window.addEventListener('hashchange', () => {
    const token = tokenFromHash();
    if (token) login(token);
  });
  const initialToken = tokenFromHash();
  if (initialToken) login(initialToken);
  else start();
})();
