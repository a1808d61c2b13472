// Print farm dashboard, shared core: formatting, the API client, toasts, confirmation,
// the caller's role, hash routes between views, polling while a view is visible, and the
// keyed-row helper every list uses. Plain ES2020, no build step, no dependencies.
//
// Every file of the dashboard is a classic deferred script that adds to `window.farm`; this
// one loads first. Views follow one rule: rows are created once per key and updated in place,
// with each rendered value cached so that an unchanged field never causes a DOM write.
'use strict';

(() => {
  const API = '/api/v1';
  const farm = (window.farm = window.farm || {});
  const $ = (sel) => document.querySelector(sel);
  farm.$ = $;
  // The live model (app.js fills it from the stream): id -> printer record, id -> job.
  farm.printers = new Map();
  farm.jobs = new Map();
  /** The printer records sorted by id (app.js keeps it). */
  farm.sortedPrinters = [];
  /** Called after each frame that applied stream changes, with `true` if printer states changed. */
  farm.listeners = [];

  const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });
  farm.cmpId = (a, b) => collator.compare(a, b) || (a < b ? -1 : a > b ? 1 : 0);

  // ---------------------------------------------------------------- formatting
  farm.fmtDur = (s) => {
    if (s == null || !Number.isFinite(s) || s < 0) return '';
    if (s < 60) return `${Math.round(s)} s`;
    const totalMin = Math.round(s / 60);
    if (totalMin < 60) return `${totalMin} min`;
    const h = Math.floor(totalMin / 60);
    const m = totalMin % 60;
    if (h >= 48) return `${Math.floor(h / 24)} d ${h % 24} h`;
    return m ? `${h} h ${m} min` : `${h} h`;
  };

  farm.fmtAgo = (iso) => {
    const t = Date.parse(iso);
    if (!Number.isFinite(t)) return '';
    const s = Math.max(0, (Date.now() - t) / 1000);
    if (s < 60) return 'just now';
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 172800) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  };

  // Formatters are made once: toLocaleTimeString() builds one per call, which costs more than
  // the timeline's whole draw of a screenful of bars.
  const clockFmt = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit' });
  const dayFmt = new Intl.DateTimeFormat([], { month: 'short', day: 'numeric' });
  const dayOf = (ms) => Math.floor((ms - new Date(ms).getTimezoneOffset() * 60000) / 86400000);

  /** "14:05" today, "Dec 4 14:05" another day; `t` is an ISO string or epoch ms. */
  farm.fmtClock = (t) => {
    const ms = typeof t === 'number' ? t : Date.parse(t);
    if (!Number.isFinite(ms)) return '';
    const time = clockFmt.format(ms);
    if (dayOf(ms) === dayOf(Date.now())) return time;
    return `${dayFmt.format(ms)} ${time}`;
  };

  farm.fmtTemp = (v) => (Number.isFinite(v) ? String(Math.round(v)) : '–');

  farm.fmtGrams = (g) => {
    if (g == null || !Number.isFinite(g)) return '–';
    if (Math.abs(g) >= 1000) return `${(g / 1000).toFixed(2)} kg`;
    return `${Math.round(g)} g`;
  };

  farm.pct = (p) => {
    if (p == null || !Number.isFinite(p)) return null;
    return Math.round(Math.min(1, Math.max(0, p)) * 100);
  };

  farm.timeMs = (iso) => {
    const t = Date.parse(iso);
    return Number.isFinite(t) ? t : null;
  };

  // ---------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(message, status, problem) {
      super(message);
      this.status = status;
      this.problem = problem;
    }
  }

  /** Calls the API; a refusal throws an ApiError carrying the problem+json `detail`. */
  farm.api = async (method, path, opts = {}) => {
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
      if (res.status === 401 && path !== '/session' && farm.showLogin) farm.showLogin();
      throw new ApiError(msg, res.status, data);
    }
    return data;
  };

  // ---------------------------------------------------------------- toasts & confirm
  const toasts = $('#toasts');
  farm.toast = (kind, title, detail) => {
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
  };

  const confirmDlg = $('#confirm');
  const confirmOk = confirmDlg.querySelector('.confirm-ok');
  farm.confirmAction = (title, text, okLabel) => {
    if (confirmDlg.open) return Promise.resolve(false);
    return new Promise((resolve) => {
      $('#confirm-title').textContent = title;
      $('#confirm-text').textContent = text;
      confirmOk.textContent = okLabel;
      confirmDlg.returnValue = '';
      confirmDlg.addEventListener('close', () => resolve(confirmDlg.returnValue === 'ok'), { once: true });
      confirmDlg.showModal();
    });
  };

  /**
   * One operator action: optional confirmation, the button disabled while it runs, a toast
   * with the outcome (the API's problem detail when refused). Resolves to the answer or null.
   */
  farm.act = async ({ btn, confirm, verb, done, what, method = 'POST', path, json = {} }) => {
    if (confirm && !(await farm.confirmAction(confirm.title, confirm.text, confirm.ok))) return null;
    if (btn) btn.disabled = true;
    try {
      const res = await farm.api(method, path, { json });
      farm.toast('ok', `${done}: ${what}`, '');
      return res;
    } catch (e) {
      if (e.status !== 401) farm.toast('error', `${verb} refused for ${what}: `, e.message);
      return null;
    } finally {
      if (btn) btn.disabled = false;
    }
  };

  // ---------------------------------------------------------------- role
  // Actions the caller's role cannot take are hidden (CSS: body:not(.can-operate) .needs-operator).
  farm.role = null;
  /** Called when the role becomes known or changes. */
  farm.roleListeners = [];
  farm.canOperate = () => farm.role === 'admin' || farm.role === 'operator';
  farm.setRole = (role, name) => {
    farm.role = role || null;
    document.body.classList.toggle('can-operate', farm.canOperate());
    const who = $('#who');
    if (who) who.textContent = role ? `${name && name !== 'anonymous' ? name + ' · ' : ''}${role}` : '';
    if (role) for (const fn of farm.roleListeners) fn();
  };
  farm.loadRole = async () => {
    try {
      const s = await farm.api('GET', '/session');
      farm.setRole(s && s.role, s && s.name);
      return true;
    } catch (e) {
      farm.setRole(null);
      return e.status !== 401;
    }
  };

  // ---------------------------------------------------------------- keyed rows
  /** Makes `container`'s children exactly `els`, in order, moving as few nodes as possible. */
  farm.reconcile = (container, els) => {
    let cur = container.firstElementChild;
    for (const el of els) {
      if (el === cur) cur = cur.nextElementSibling;
      else container.insertBefore(el, cur);
    }
    while (cur) {
      const next = cur.nextElementSibling;
      cur.remove();
      cur = next;
    }
  };

  /**
   * A list whose rows are created once per key and updated in place.
   * `create(key)` returns {el, f (field elements)}; `update(row, item)` fills it, where
   * `row.set(key, el, text)` writes only a changed value and `row.last` caches the rest.
   */
  farm.keyedList = (container, create, update) => {
    const rows = new Map();
    return (items, keyOf) => {
      const keep = new Set();
      const els = [];
      for (const item of items) {
        const key = keyOf(item);
        keep.add(key);
        let row = rows.get(key);
        if (!row) {
          row = create(key);
          row.last = {};
          row.set = (k, el, v) => {
            if (row.last[k] !== v) {
              row.last[k] = v;
              el.textContent = v;
            }
          };
          rows.set(key, row);
        }
        update(row, item);
        els.push(row.el);
      }
      for (const key of rows.keys()) if (!keep.has(key)) rows.delete(key);
      farm.reconcile(container, els);
    };
  };

  /** Clones the first element of a `<template>` made from `html`. */
  farm.template = (html) => {
    const t = document.createElement('template');
    t.innerHTML = html.trim();
    return () => t.content.firstElementChild.cloneNode(true);
  };

  // ---------------------------------------------------------------- views & polling
  // Hash routes: #/grid (default), #/timeline, #/orders, #/stock. A view registers
  // {show(), hide()}; only the visible view polls.
  const views = new Map();
  farm.view = null;
  farm.registerView = (name, v) => views.set(name, v);

  function routeName() {
    const m = /^#\/([a-z]+)/.exec(location.hash);
    return m && views.has(m[1]) ? m[1] : 'grid';
  }

  /** Shows the view the hash names; `again`: also when it is already shown (reload its data). */
  farm.route = (again) => {
    const name = routeName();
    if (farm.view === name) {
      const v = views.get(name);
      if (again && v && v.show) v.show();
      return;
    }
    const prev = farm.view;
    farm.view = name;
    for (const [n, v] of views) {
      const on = n === name;
      const sec = document.getElementById(`view-${n}`);
      if (sec) sec.hidden = !on;
      const tab = document.querySelector(`.tabs a[data-view="${n}"]`);
      if (tab) {
        if (on) tab.setAttribute('aria-current', 'page');
        else tab.removeAttribute('aria-current');
      }
      if (!on && n === prev && v.hide) v.hide();
    }
    document.body.dataset.view = name;
    const v = views.get(name);
    if (v && v.show) v.show();
  };

  /**
   * Calls `fn` now and every `ms` while `isOn()` and the page is visible; `poke()` runs it
   * again at once. Never two calls in flight.
   */
  farm.poller = (fn, ms, isOn) => {
    let timer = 0;
    let running = false;
    const tick = async () => {
      clearTimeout(timer);
      timer = 0;
      if (!isOn() || document.hidden || running) return;
      running = true;
      try {
        await fn();
      } catch (e) {
        if (e && e.status !== 401) console.warn('poll failed', e);
      } finally {
        running = false;
      }
      if (isOn() && !document.hidden) timer = setTimeout(tick, ms);
    };
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) tick();
    });
    return { poke: tick, stop: () => clearTimeout(timer) };
  };
})();
