// Print farm dashboard: the orders view. GET /api/v1/orders (polled every 5 s while shown):
// state, copies printed, promised time, why copies wait; release (manual release mode),
// fulfil and cancel, each confirmed, each answered with the API's own words when refused.
'use strict';

(() => {
  const farm = window.farm;
  const { api, act, fmtClock, fmtGrams, timeMs } = farm;
  const $ = farm.$;

  const STATE_LABEL = {
    received: 'Received',
    in_production: 'In production',
    ready: 'Ready',
    fulfilled: 'Fulfilled',
    cancelled: 'Cancelled',
    failed: 'Failed',
  };
  const OPEN = new Set(['received', 'in_production', 'ready']);
  const FINAL = new Set(['fulfilled', 'cancelled', 'failed']);

  const view = $('#view-orders');
  const tbody = $('#orders tbody');
  const emptyEl = $('#orders-empty');
  const countEl = $('#orders-count');
  const stateSel = $('#orders-state');

  /** order id -> the latest view from the API. */
  const orders = new Map();
  const shown = () => farm.view === 'orders';
  const poll = farm.poller(load, 5000, shown);

  // Open orders are fetched by state, so an old order still open is never cut off by the
  // page limit; "all" shows the newest 500.
  async function load() {
    const want = stateSel.value;
    const states = want === 'open' ? Array.from(OPEN) : want === 'all' ? [null] : [want];
    const pages = await Promise.all(
      states.map((s) => api('GET', `/orders?limit=500${s ? `&state=${encodeURIComponent(s)}` : ''}`)),
    );
    orders.clear();
    for (const res of pages) for (const o of (res && res.items) || []) orders.set(o.id, o);
    render();
  }

  const rowTpl = farm.template(`<tr>
  <td class="col-name"><span class="oname"></span><small class="oid"></small></td>
  <td><span class="ostate"></span><small class="ohold"></small></td>
  <td class="col-copies"><div class="bar"><i></i></div><span class="ocopies"></span><small class="oitems"></small></td>
  <td class="col-when"><span class="oeta"></span><small class="odue"></small></td>
  <td class="col-g"></td>
  <td class="col-why"><span></span></td>
  <td class="col-act needs-operator">
    <button type="button" data-action="release">Release</button>
    <button type="button" data-action="fulfil" class="primary">Fulfil</button>
    <button type="button" data-action="cancel" class="danger">Cancel</button>
  </td>
</tr>`);

  function create(id) {
    const el = rowTpl();
    el.dataset.orderId = id;
    const q = (s) => el.querySelector(s);
    return {
      el,
      f: {
        name: q('.oname'),
        id: q('.oid'),
        state: q('.ostate'),
        hold: q('.ohold'),
        fill: q('.bar > i'),
        copies: q('.ocopies'),
        items: q('.oitems'),
        eta: q('.oeta'),
        due: q('.odue'),
        grams: q('.col-g'),
        why: q('.col-why > span'),
        release: q('[data-action="release"]'),
        fulfil: q('[data-action="fulfil"]'),
        cancel: q('[data-action="cancel"]'),
      },
    };
  }

  function itemText(it) {
    const what = it.sku || (it.files && it.files.map((f) => f.name).join(' + ')) || 'item';
    const mat = [it.material, it.colour].filter(Boolean).join(' ');
    return `${what} × ${it.quantity}${mat ? ` (${mat})` : ''}: ${it.printed}/${it.quantity} printed`;
  }

  /** "job-7: reason", one per waiting copy: the same reason once, with how many copies wait on it. */
  function waitingText(list) {
    const by = new Map();
    for (const w of list) {
      const reason = w.replace(/^[^:]*:\s*/, '');
      by.set(reason, (by.get(reason) || 0) + 1);
    }
    return Array.from(by, ([r, n]) => (n > 1 ? `${n} copies: ${r}` : r)).join('; ');
  }

  function update(row, o) {
    const f = row.f;
    const L = row.last;
    row.set('name', f.name, o.customer_ref || o.id);
    row.set('id', f.id, `${o.id} · ${o.shop}${o.priority ? ` · priority ${o.priority}` : ''}`);
    if (L.state !== o.status) {
      L.state = o.status;
      row.el.dataset.state = o.status;
      f.state.textContent = STATE_LABEL[o.status] || o.status;
    }
    const awaiting = !o.released && !FINAL.has(o.status);
    row.set('hold', f.hold, awaiting ? 'awaiting release' : '');

    let total = 0;
    let printed = 0;
    for (const it of o.items || []) {
      total += it.quantity;
      printed += it.printed;
    }
    const share = total ? printed / total : 0;
    if (L.share !== share) {
      L.share = share;
      f.fill.style.transform = `scaleX(${share})`;
    }
    row.set('copies', f.copies, `${printed}/${total} copies`);
    const items = o.items || [];
    row.set('items', f.items, items.length === 1 ? itemText(items[0]).split(':')[0] : `${items.length} items`);
    const itemsTitle = items.map(itemText).join('\n');
    if (L.itemsTitle !== itemsTitle) {
      L.itemsTitle = itemsTitle;
      f.items.title = itemsTitle;
    }

    let eta = '';
    if (o.eta) eta = `ETA ${fmtClock(o.eta)}`;
    else if (o.status === 'ready') eta = 'all printed';
    else if (OPEN.has(o.status) && o.status !== 'ready') eta = 'ETA unknown';
    row.set('eta', f.eta, eta);
    const late = o.due && o.eta && timeMs(o.eta) > timeMs(o.due);
    if (L.late !== late) {
      L.late = late;
      row.el.classList.toggle('late', !!late);
    }
    row.set('due', f.due, o.due ? `due ${fmtClock(o.due)}${late ? ' — late' : ''}` : '');
    const g = o.material_wasted_g > 0 ? `${fmtGrams(o.material_used_g)} (${fmtGrams(o.material_wasted_g)} wasted)` : fmtGrams(o.material_used_g);
    row.set('grams', f.grams, g);
    const why = waitingText(o.waiting || []);
    row.set('why', f.why, why);
    if (L.whyTitle !== why) {
      L.whyTitle = why;
      f.why.title = (o.waiting || []).join('\n');
    }

    const can = {
      release: awaiting,
      fulfil: o.status === 'ready',
      cancel: o.status === 'received' || o.status === 'in_production',
    };
    for (const k of Object.keys(can)) {
      if (L[k] !== can[k]) {
        L[k] = can[k];
        f[k].hidden = !can[k];
      }
    }
  }

  const list = farm.keyedList(tbody, create, update);

  function render() {
    const want = stateSel.value;
    const items = Array.from(orders.values()).filter((o) =>
      want === 'open' ? OPEN.has(o.status) : want === 'all' ? true : o.status === want,
    );
    // Ready (to hand over) first, then what is in production, then the rest; newest first.
    const rank = (o) => (o.status === 'ready' ? 0 : OPEN.has(o.status) ? 1 : 2);
    items.sort((a, b) => rank(a) - rank(b) || (timeMs(b.created_at) || 0) - (timeMs(a.created_at) || 0));
    list(items, (o) => o.id);
    emptyEl.hidden = items.length > 0;
    emptyEl.textContent = orders.size ? 'No orders in this state.' : 'No orders yet.';
    let open = 0;
    let ready = 0;
    for (const o of orders.values()) {
      if (OPEN.has(o.status)) open++;
      if (o.status === 'ready') ready++;
    }
    countEl.textContent = want === 'open' ? `(${open} open · ${ready} ready to hand over)` : `(${items.length} shown)`;
  }

  const ACTIONS = {
    release: (o) => ({
      verb: 'Release',
      done: 'Released',
      path: 'release',
      confirm: { title: 'Release order?', text: `Release ${o.customer_ref || o.id} to the printers now?`, ok: 'Release' },
    }),
    fulfil: (o) => ({
      verb: 'Fulfil',
      done: 'Fulfilled',
      path: 'fulfil',
      confirm: { title: 'Hand over order?', text: `Mark ${o.customer_ref || o.id} as fulfilled (handed to the shop)?`, ok: 'Fulfil' },
    }),
    cancel: (o) => ({
      verb: 'Cancel',
      done: 'Cancelled',
      path: 'cancel',
      confirm: {
        title: 'Cancel order?',
        text: `Cancel ${o.customer_ref || o.id}? Its queued copies are removed; copies printing now finish. This cannot be undone.`,
        ok: 'Cancel order',
      },
    }),
  };

  tbody.addEventListener('click', async (e) => {
    const btn = e.target.closest('button[data-action]');
    if (!btn || btn.disabled) return;
    const id = btn.closest('tr[data-order-id]').dataset.orderId;
    const o = orders.get(id);
    if (!o) return;
    const a = ACTIONS[btn.dataset.action](o);
    const res = await act({
      btn,
      confirm: a.confirm,
      verb: a.verb,
      done: a.done,
      what: o.customer_ref || o.id,
      path: `/orders/${encodeURIComponent(id)}/${a.path}`,
    });
    if (res && res.id) {
      orders.set(res.id, res);
      render();
    }
    poll.poke();
  });
  stateSel.addEventListener('change', () => {
    render();
    poll.poke();
  });

  farm.registerView('orders', {
    show() {
      view.hidden = false;
      poll.poke();
    },
  });
})();
