// Print farm dashboard: the live stream (/api/v1/stream) into the model, the live indicator,
// sign-in, and boot. The model itself is app.js's.
'use strict';

(() => {
  const farm = window.farm;
  const { api, fmtDur } = farm;
  const $ = farm.$;
  const API = '/api/v1';
  const { onSnapshot, onPrinter, onJob, onJobRemoved } = farm.model;
  const liveEl = $('#live');
  const versionEl = $('#version');
  const loginDlg = $('#login');
  const loginForm = $('#login-form');
  const loginToken = $('#login-token');
  const loginError = $('#login-error');

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
    if (!(await loadHealth()) || authNeeded) return;
    // No credential and no anonymous role: ask for a token before anything else.
    if (!(await farm.loadRole())) {
      showLogin();
      return;
    }
    connect();
    // The visible view loads its data again now that the caller is known.
    farm.route(true);
    farm.queue.loadFilaments();
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
      const s = await api('POST', '/session', { json: { token } });
      farm.setRole(s && s.role, s && s.name);
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
    farm.route();
  });
  farm.showLogin = showLogin;
  const initialToken = tokenFromHash();
  farm.route();
  if (initialToken) login(initialToken);
  else start();
})();
