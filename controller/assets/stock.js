// Print farm dashboard: inventory and maintenance (#/stock). Stock per material + colour
// with low stock highlighted and the shortage forecast beside it, the spools, and the
// maintenance tasks that are due or overdue with a "Done" action. Polled every 5 s while shown.
'use strict';

(() => {
  const farm = window.farm;
  const { api, act, fmtClock, fmtGrams } = farm;
  const $ = farm.$;

  const view = $('#view-stock');
  const stockBody = $('#stock tbody');
  const stockEmpty = $('#stock-empty');
  const stockCount = $('#stock-count');
  const basisEl = $('#forecast-basis');
  const spoolBody = $('#spools tbody');
  const spoolEmpty = $('#spools-empty');
  const spoolCount = $('#spools-count');
  const dueBody = $('#due tbody');
  const dueEmpty = $('#due-empty');
  const dueCount = $('#due-count');

  const shown = () => farm.view === 'stock';
  const poll = farm.poller(load, 5000, shown);
  let tasks = new Map();

  async function load() {
    const [stock, forecast, spools, due] = await Promise.all([
      api('GET', '/inventory/stock'),
      api('GET', '/inventory/forecast'),
      api('GET', '/spools?limit=1000'),
      api('GET', '/maintenance/due'),
    ]);
    renderStock((stock && stock.items) || [], (forecast && forecast.items) || []);
    basisEl.textContent = (forecast && forecast.basis) ? `Forecast: ${forecast.basis}.` : '';
    renderSpools((spools && spools.items) || [], !!(spools && spools.next_cursor));
    renderDue((due && due.items) || []);
  }

  // ---------------------------------------------------------------- stock + forecast
  const stockTpl = farm.template(`<tr>
  <td class="col-name"><span class="sw"></span><span class="mname"></span></td>
  <td class="col-num mleft"></td>
  <td class="col-num mspools"></td>
  <td class="col-num mthr"></td>
  <td><span class="mflag"></span></td>
  <td class="col-num mneed"></td>
  <td class="mout"></td>
</tr>`);

  const key = (material, colour) => `${material}\u0000${colour == null ? '*' : colour}`;

  const stockList = farm.keyedList(
    stockBody,
    (k) => {
      const el = stockTpl();
      el.dataset.stock = k.replace('\u0000', '/');
      const q = (s) => el.querySelector(s);
      return {
        el,
        f: {
          sw: q('.sw'),
          name: q('.mname'),
          left: q('.mleft'),
          spools: q('.mspools'),
          thr: q('.mthr'),
          flag: q('.mflag'),
          need: q('.mneed'),
          out: q('.mout'),
        },
      };
    },
    (row, it) => {
      const f = row.f;
      const L = row.last;
      const colour = it.colour == null ? 'any colour' : it.colour;
      row.set('name', f.name, `${it.material} ${colour}`);
      if (L.sw !== it.colour) {
        L.sw = it.colour;
        // A swatch helps find the spool on the shelf; unknown names just show no colour.
        f.sw.style.background = it.colour ? it.colour.toLowerCase().replace(/\s+/g, '') : 'transparent';
      }
      row.set('left', f.left, it.level ? fmtGrams(it.level.remaining_g) : fmtGrams(it.short && it.short.stock_g));
      row.set('spools', f.spools, it.level ? String(it.level.spools) : '');
      row.set('thr', f.thr, it.level ? fmtGrams(it.level.threshold_g) : '');
      const short = it.short && it.short.shortfall_g > 0;
      const state = short ? 'short' : it.level && it.level.low ? 'low' : 'ok';
      if (L.state !== state) {
        L.state = state;
        row.el.dataset.level = state;
        f.flag.textContent = { short: 'Short', low: 'Low stock', ok: 'OK' }[state];
      }
      const s = it.short;
      row.set('need', f.need, s ? `${fmtGrams(s.demand_g)} · ${s.jobs} job${s.jobs === 1 ? '' : 's'}` : '');
      let out = '';
      if (s && s.shortfall_g > 0) {
        out = `${fmtGrams(s.shortfall_g)} missing${s.runs_out_at ? ` · runs out ${fmtClock(s.runs_out_at)}` : ''}`;
      }
      row.set('out', f.out, out);
    },
  );

  function renderStock(levels, shortages) {
    const rows = new Map();
    for (const l of levels) rows.set(key(l.material, l.colour), { material: l.material, colour: l.colour, level: l });
    for (const s of shortages) {
      const k = key(s.material, s.colour);
      const r = rows.get(k) || { material: s.material, colour: s.colour };
      r.short = s;
      rows.set(k, r);
    }
    const rank = (r) => (r.short && r.short.shortfall_g > 0 ? 0 : r.level && r.level.low ? 1 : 2);
    const items = Array.from(rows.values()).sort(
      (a, b) => rank(a) - rank(b) || farm.cmpId(key(a.material, a.colour), key(b.material, b.colour)),
    );
    stockList(items, (r) => key(r.material, r.colour));
    stockEmpty.hidden = items.length > 0;
    const low = items.filter((r) => rank(r) < 2).length;
    stockCount.textContent = `(${items.length} material${items.length === 1 ? '' : 's'}${low ? ` · ${low} low or short` : ''})`;
  }

  // ---------------------------------------------------------------- spools
  const spoolTpl = farm.template(`<tr>
  <td class="col-name sid"></td>
  <td class="smat"></td>
  <td class="col-num sleft"></td>
  <td class="col-copies"><div class="bar"><i></i></div></td>
  <td class="swhere"></td>
</tr>`);

  const spoolList = farm.keyedList(
    spoolBody,
    (id) => {
      const el = spoolTpl();
      el.dataset.spoolId = id;
      const q = (s) => el.querySelector(s);
      return { el, f: { id: q('.sid'), mat: q('.smat'), left: q('.sleft'), fill: q('.bar > i'), where: q('.swhere') } };
    },
    (row, s) => {
      const f = row.f;
      row.set('id', f.id, s.lot ? `${s.id} · lot ${s.lot}` : s.id);
      row.set('mat', f.mat, `${s.material} ${s.colour}`);
      row.set('left', f.left, `${fmtGrams(s.remaining_g)} of ${fmtGrams(s.initial_g)}`);
      const share = s.initial_g > 0 ? Math.max(0, Math.min(1, s.remaining_g / s.initial_g)) : 0;
      if (row.last.share !== share) {
        row.last.share = share;
        f.fill.style.transform = `scaleX(${share})`;
        row.el.classList.toggle('nearly-empty', share < 0.1);
      }
      const where = s.loaded ? `on ${s.loaded.printer}, tool ${s.loaded.tool}` : s.location || 'on the shelf';
      row.set('where', f.where, where);
    },
  );

  function renderSpools(spools, more) {
    // Mounted spools first (what the floor is using), then by what is left.
    const items = spools
      .filter((s) => s.remaining_g > 0 || s.loaded)
      .sort((a, b) => (b.loaded ? 1 : 0) - (a.loaded ? 1 : 0) || a.remaining_g - b.remaining_g);
    spoolList(items, (s) => s.id);
    spoolEmpty.hidden = items.length > 0;
    spoolCount.textContent = `(${items.length}${more ? '+' : ''} with filament)`;
  }

  // ---------------------------------------------------------------- maintenance
  const dueTpl = farm.template(`<tr>
  <td class="col-name"><span class="tname"></span><small class="tid"></small></td>
  <td class="tprinter"></td>
  <td><span class="tdue"></span><small class="tstop"></small></td>
  <td class="tused"></td>
  <td class="col-act needs-operator"><button type="button" data-action="complete" class="primary">Done</button></td>
</tr>`);

  function usedText(t) {
    const i = t.interval || {};
    const parts = [];
    if (i.print_hours) parts.push(`${t.used.print_hours.toFixed(1)}/${i.print_hours} h`);
    if (i.filament_m) parts.push(`${Math.round(t.used.filament_m)}/${i.filament_m} m`);
    if (i.jobs) parts.push(`${t.used.jobs}/${i.jobs} jobs`);
    if (i.days) parts.push(`${t.days.toFixed(1)}/${i.days} days`);
    return `${Math.round(t.progress * 100)} % · ${parts.join(' · ')}`;
  }

  const dueList = farm.keyedList(
    dueBody,
    (id) => {
      const el = dueTpl();
      el.dataset.taskId = id;
      const q = (s) => el.querySelector(s);
      return { el, f: { name: q('.tname'), id: q('.tid'), printer: q('.tprinter'), due: q('.tdue'), stop: q('.tstop'), used: q('.tused') } };
    },
    (row, t) => {
      const f = row.f;
      row.set('name', f.name, t.name);
      row.set('id', f.id, `${t.id}${t.last_done ? ` · last done ${fmtClock(t.last_done.at)} by ${t.last_done.by}` : ''}`);
      const rec = farm.printers.get(t.printer);
      row.set('printer', f.printer, (rec && rec.d.name) || t.printer);
      const state = t.due + (t.blocks_printer ? ' blocking' : '');
      if (row.last.state !== state) {
        row.last.state = state;
        row.el.dataset.due = t.due;
        row.el.classList.toggle('blocking', t.blocks_printer);
        f.due.textContent = t.due === 'overdue' ? 'Overdue' : 'Due soon';
        f.stop.textContent = t.blocks_printer ? 'printer stopped' : t.blocking ? 'stops the printer when due' : '';
      }
      row.set('used', f.used, usedText(t));
    },
  );

  function renderDue(items) {
    tasks = new Map(items.map((t) => [t.id, t]));
    dueList(items, (t) => t.id);
    dueEmpty.hidden = items.length > 0;
    const over = items.filter((t) => t.due === 'overdue').length;
    dueCount.textContent = `(${over} overdue · ${items.length - over} due soon)`;
  }

  dueBody.addEventListener('click', async (e) => {
    const btn = e.target.closest('button[data-action="complete"]');
    if (!btn || btn.disabled) return;
    const id = btn.closest('tr[data-task-id]').dataset.taskId;
    const t = tasks.get(id);
    const what = t ? `${t.name} on ${t.printer}` : id;
    const res = await act({
      btn,
      confirm: { title: 'Maintenance done?', text: `Record "${what}" as done now? Its counters start again from zero.`, ok: 'Done' },
      verb: 'Recording maintenance',
      done: 'Maintenance recorded',
      what,
      path: `/maintenance/tasks/${encodeURIComponent(id)}/complete`,
    });
    if (res) {
      poll.poke();
      if (farm.alerts) farm.alerts.refresh();
    }
  });

  farm.registerView('stock', {
    show() {
      view.hidden = false;
      poll.poke();
    },
  });
})();
