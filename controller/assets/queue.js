// Print farm dashboard: the job queue beside the grid (active and queued jobs, recent ones),
// the job upload and job cancel. Rows are keyed by job id and updated in place; app.js
// tells this file which jobs changed and renders it in its animation frame.
'use strict';

(() => {
  const farm = window.farm;
  const { api, toast, confirmAction, reconcile, cmpId, fmtDur, fmtClock, pct } = farm;
  const $ = farm.$;
  const printers = farm.printers;
  const jobs = farm.jobs;

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
  farm.ACTIVE_JOB = ACTIVE_JOB;
  const FINISHED_JOB = new Set(['completed', 'failed', 'cancelled']);
  const CANCELLABLE_JOB = new Set(['queued', 'assigned']);
  const RECENT_MAX = 20;
  // Keep the queue table short: with 2,000 rows every live progress change relaid out the whole
  // table (20 fps with 1,000 printers printing, BENCHMARKS.md); the timeline shows every job.
  const QUEUE_MAX_ROWS = 200;

  const queueBody = $('#queue tbody');
  const queueEmpty = $('#queue-empty');
  const queueCount = $('#queue-count');
  const recentBody = $('#recent tbody');
  const recentCount = $('#recent-count');
  const uploadForm = $('#upload');
  const uploadFile = $('#upload-file');
  const uploadCopies = $('#upload-copies');
  const uploadSubmit = $('#upload-submit');
  const uploadFilament = $('#upload-filament');
  const uploadPlate = $('#upload-plate');
  const showPlates = (plates) => {
    uploadPlate.replaceChildren(...plates.map((p) => {
      const o = document.createElement('option');
      const mins = Math.round((p.slicer_estimated_s || p.estimated_s) / 60);
      o.value = p.plate;
      o.textContent = `${p.plate}${p.name ? ` ${p.name}` : ''} (${mins} min)`;
      return o;
    }));
    uploadPlate.hidden = uploadPlate.previousElementSibling.hidden = plates.length < 2;
  };
  uploadFile.addEventListener('change', () => showPlates([]));

  /** id -> {tr, f, last, where: 'queue' | 'recent'} */
  const jobRows = new Map();
  const dirtyJobs = new Set();
  let jobOrderDirty = false;

  // ---------------------------------------------------------------- job rows
  const queueTpl = document.createElement('template');
  queueTpl.innerHTML =
    '<tr><td class="col-name"><span class="jname"></span><small class="jid"></small></td>' +
    '<td><span class="jstate"></span></td><td class="col-printer"></td>' +
    '<td class="col-progress"></td><td class="col-time"></td>' +
    '<td class="col-act"><button type="button" data-action="cancel-job" class="needs-operator">Cancel</button></td></tr>';
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
    // The chosen filament (material + colour) routes the jobs to printers that have it loaded.
    const opt = uploadFilament.selectedOptions[0];
    let needs = '';
    if (opt && opt.value) {
      needs = `&material=${encodeURIComponent(opt.dataset.material)}&colour=${encodeURIComponent(opt.dataset.colour)}`;
    }
    uploadSubmit.disabled = true;
    uploadSubmit.textContent = 'Uploading…';
    const raw = { body: file, headers: { 'Content-Type': 'application/octet-stream' } };
    const name = encodeURIComponent(file.name);
    try {
      // A .gcode.3mf with several plates: store it, let the operator pick one, then queue it.
      const plate = uploadPlate.hidden ? '' : `&plate=${uploadPlate.value}`;
      if (!plate && /\.3mf$/i.test(file.name)) {
        const meta = await api('POST', `/files?name=${name}`, raw);
        const plates = (meta && meta.plates) || [];
        if (plates.length > 1) {
          showPlates(plates);
          toast('ok', `${file.name} has ${plates.length} plates`, ': choose one and press Upload');
          return;
        }
      }
      const res = await api('POST', `/jobs?name=${name}&copies=${copies}${plate}${needs}`, raw);
      const added = (res && Array.isArray(res.jobs) && res.jobs) || [];
      // app.js (loaded after this file) owns the model; the stream will repeat these.
      for (const j of added) farm.onJob(j);
      toast('ok', `Added ${file.name}`, ` — ${added.length || copies} job${(added.length || copies) === 1 ? '' : 's'} queued`);
      uploadForm.reset();
      showPlates([]);
    } catch (e2) {
      if (e2.status !== 401) toast('error', `Upload of ${file.name} failed: `, e2.message);
    } finally {
      uploadSubmit.disabled = false;
      uploadSubmit.textContent = 'Upload';
    }
  });

  // The filament choices are the inventory's materials, read when the picker is opened.
  async function loadFilaments() {
    let items;
    try {
      const res = await api('GET', '/materials');
      items = (res && Array.isArray(res.items) && res.items) || [];
    } catch (e2) {
      return;
    }
    // Unchanged: leave the list alone (replacing it would close a picker being opened).
    const key = items.map((m) => `${m.id}\u0000${m.material}\u0000${m.colour}`).join('\u0001');
    if (uploadFilament.dataset.key === key) return;
    uploadFilament.dataset.key = key;
    const keep = uploadFilament.value;
    const opts = [uploadFilament.options[0]];
    for (const m of items) {
      const o = document.createElement('option');
      o.value = m.id;
      o.dataset.material = m.material;
      o.dataset.colour = m.colour;
      o.textContent = m.colour ? `${m.material} ${m.colour}` : m.material;
      opts.push(o);
    }
    uploadFilament.replaceChildren(...opts);
    uploadFilament.value = items.some((m) => m.id === keep) ? keep : '';
  }
  uploadFilament.addEventListener('focus', loadFilaments);
  uploadFilament.addEventListener('pointerdown', loadFilaments);

  farm.queue = {
    loadFilaments,
    /** The job's row shows something that changed (job or its printer). */
    touch(id) {
      if (jobRows.has(id)) dirtyJobs.add(id);
    },
    /** Membership or order may have changed. */
    reorder() {
      jobOrderDirty = true;
    },
    /** Everything changed (a snapshot). */
    all() {
      for (const id of jobs.keys()) dirtyJobs.add(id);
      jobOrderDirty = true;
    },
    render: renderJobs,
  };
})();
