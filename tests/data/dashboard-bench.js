// Dashboard rendering with a synthetic farm of PRINTERS printers, each printing one job with
// JOBS_PER more planned on it (tests/tests/dashboard_bench.rs runs this in Chromium). The data
// goes through the dashboard's own entry points (the stream's snapshot and printer diffs, and a
// GET /queue answered with the synthetic plan); all rendering is the real code.
(async () => {
  const N = PRINTERS;
  const K = JOBS_PER;
  const now = Date.now();
  const iso = (t) => new Date(t).toISOString();
  const printers = [];
  const jobs = [];
  const plan = [];
  for (let i = 0; i < N; i++) {
    const id = `p-${String(i).padStart(4, '0')}`;
    const jid = `job-r${i}`;
    const eta = 600 + (i % 1800);
    printers.push({
      id, name: `Printer ${i}`, state: 'busy', online: true, activity: 'printing',
      temps: [{ name: 'tool0', actual: 210, target: 210 }, { name: 'bed', actual: 60, target: 60 }],
      job: { job_id: jid, progress: 0.3, layer: 10, layer_count: 50, eta_s: eta },
      current_job_id: jid, message: null, auto_eject: true, last_seen: iso(now), agent: null,
      maintenance: false, tools: [], tags: [],
    });
    jobs.push({
      id: jid, name: `part-${i}.gcode`, state: 'printing', printer_id: id, priority: 0,
      created_at: iso(now - 600000), started_at: iso(now - 300000), progress: 0.3,
      estimated_s: 1200, attempts: 1,
    });
    let t = now + eta * 1000;
    for (let k = 0; k < K; k++) {
      const qid = `job-q${i}-${k}`;
      jobs.push({
        id: qid, name: `queued-${k}.gcode`, state: 'queued', printer_id: null, priority: 0,
        created_at: iso(now), progress: 0, estimated_s: 1800, attempts: 1,
        order: k % 2 ? { order_id: `ord-${i}`, item: 0, copy: k, part: 0 } : null,
      });
      plan.push({ job_id: qid, printer_id: id, start: iso(t), end: iso(t + 1800000), waiting: null });
      t += 1800000;
    }
  }
  const realFetch = window.fetch;
  window.fetch = (u, init) =>
    String(u).endsWith('/api/v1/queue')
      ? Promise.resolve(new Response(JSON.stringify({ items: plan, planned_jobs: plan.length }),
          { headers: { 'content-type': 'application/json' } }))
      : realFetch(u, init);

  const frame = () => new Promise((r) => requestAnimationFrame(() => r(performance.now())));
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const q = (xs, p) => {
    const s = xs.slice().sort((a, b) => a - b);
    return +s[Math.min(s.length - 1, Math.floor(p * s.length))].toFixed(1);
  };
  // Frame intervals while `work(i)` runs once a frame for `ms`.
  async function frames(ms, work) {
    const gaps = [];
    let last = await frame();
    const end = last + ms;
    for (let i = 0; last < end; i++) {
      if (work) work(i);
      const t = await frame();
      gaps.push(t - last);
      last = t;
    }
    return { frames: gaps.length, p50_ms: q(gaps, 0.5), p95_ms: q(gaps, 0.95), max_ms: q(gaps, 1) };
  }
  // Every printer sends a status once a second (1 Hz), spread over the frames.
  let tick = 0;
  const live = () => {
    const per = Math.ceil(N / 60);
    for (let k = 0; k < per; k++) {
      const i = (tick++) % N;
      const p = printers[i];
      const progress = ((tick / N) * 0.01 + 0.3) % 1;
      farm.model.onPrinter({ id: p.id, job: Object.assign({}, p.job, { progress, eta_s: p.job.eta_s - tick / N }),
        temps: [{ name: 'tool0', actual: 209 + (tick % 3), target: 210 }, { name: 'bed', actual: 60, target: 60 }] });
    }
  };
  const out = { printers: N, planned_jobs: plan.length };

  location.hash = '#/grid';
  await frame();
  let t0 = performance.now();
  farm.model.onSnapshot({ printers, jobs });
  await frame();
  void document.body.offsetHeight;
  out.grid_snapshot_ms = +(performance.now() - t0).toFixed(1);
  out.grid_live = await frames(3000, live);

  location.hash = '#/timeline';
  for (let i = 0; i < 100 && !document.querySelector('.tl-bar[data-kind="planned"]'); i++) await sleep(50);
  const draws = [];
  for (let i = 0; i < 30; i++) {
    t0 = performance.now();
    farm.timeline.render();
    void document.body.offsetHeight;
    draws.push(performance.now() - t0);
  }
  out.timeline_draw = { p50_ms: q(draws, 0.5), max_ms: q(draws, 1),
    rows_in_dom: document.querySelectorAll('.tl-row').length,
    bars_in_dom: document.querySelectorAll('.tl-bar').length };
  const sc = document.querySelector('#tl-scroll');
  const steps = Math.max(1, Math.ceil((sc.scrollHeight - sc.clientHeight) / 600));
  out.timeline_scroll = await frames(Math.min(5000, steps * 40), (i) => {
    sc.scrollTop = ((i * 600) % Math.max(1, sc.scrollHeight - sc.clientHeight));
  });
  out.timeline_live = await frames(3000, live);
  window.fetch = realFetch;
  return JSON.stringify(out);
})()
