// Print farm dashboard: the alerts strip under the header, on every view. Printers in error
// and beds awaiting clearing come live from the stream; low stock and overdue blocking
// maintenance are polled (every 10 s while the page is visible). A click leads to the view
// that deals with it.
'use strict';

(() => {
  const farm = window.farm;
  const { api, fmtGrams } = farm;
  const strip = farm.$('#alerts');
  const MAX_NAMES = 4;

  let lowStock = [];
  let stopped = [];
  let lastKey = '';

  const poll = farm.poller(
    async () => {
      const [low, due] = await Promise.all([api('GET', '/inventory/low-stock'), api('GET', '/maintenance/due')]);
      lowStock = (low && low.items) || [];
      stopped = ((due && due.items) || []).filter((t) => t.blocks_printer);
      render();
    },
    10000,
    () => !!farm.role,
  );

  function names(list) {
    const shown = list.slice(0, MAX_NAMES).join(', ');
    return list.length > MAX_NAMES ? `${shown} +${list.length - MAX_NAMES}` : shown;
  }

  function alerts() {
    const error = [];
    const clear = [];
    for (const rec of farm.sortedPrinters) {
      const s = rec.d.state;
      if (s === 'error') error.push(rec.d.name || rec.id);
      else if (s === 'awaiting_clear') clear.push(rec.d.name || rec.id);
    }
    const out = [];
    if (error.length) {
      out.push({ kind: 'error', href: '#/grid', state: 'error', text: `${error.length} in error: ${names(error)}` });
    }
    if (clear.length) {
      out.push({ kind: 'clear', href: '#/grid', state: 'awaiting_clear', text: `${clear.length} bed${clear.length === 1 ? '' : 's'} to clear: ${names(clear)}` });
    }
    if (stopped.length) {
      const what = stopped.map((t) => `${t.name} (${t.printer})`);
      out.push({ kind: 'maint', href: '#/stock', text: `Maintenance overdue, printer stopped: ${names(what)}` });
    }
    if (lowStock.length) {
      const what = lowStock.map((l) => `${l.material} ${l.colour} ${fmtGrams(l.remaining_g)}`);
      out.push({ kind: 'low', href: '#/stock', text: `Low stock: ${names(what)}` });
    }
    return out;
  }

  function render() {
    const list = alerts();
    const key = list.map((a) => a.kind + a.text).join('\n');
    if (key === lastKey) return;
    lastKey = key;
    strip.textContent = '';
    for (const a of list) {
      const link = document.createElement('a');
      link.className = `alert alert-${a.kind}`;
      link.href = a.href;
      if (a.state) link.dataset.filterState = a.state;
      link.textContent = a.text;
      strip.appendChild(link);
    }
    strip.hidden = list.length === 0;
  }

  // An alert about printers shows the grid filtered to them.
  strip.addEventListener('click', (e) => {
    const link = e.target.closest('a[data-filter-state]');
    if (!link) return;
    const sel = farm.$('#state-filter');
    sel.value = link.dataset.filterState;
    sel.dispatchEvent(new Event('change'));
  });

  // Printer states changed (or printers came and went) in this frame.
  farm.listeners.push((states) => {
    if (states) render();
  });
  farm.alerts = { refresh: () => poll.poke() };
  // Start polling once the caller is known (stream.js loads the role before the stream).
  farm.roleListeners.push(() => poll.poke());
})();
