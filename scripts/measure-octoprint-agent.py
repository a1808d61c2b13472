#!/usr/bin/env python3
"""Measures the agent's footprint while it prints through a real OctoPrint (for BENCHMARKS.md).

Starts a throwaway OctoPrint 1.11.8 with its Virtual Printer (the venv that
scripts/install-peers.sh makes; same headless recipe as tests/src/octoprint.rs), a
`farm-controller serve`, and one `farm-agent` with `backend = "octoprint"` at the default
1 Hz status (and OctoPrint's push channel throttled to 1 s). Submits a long job (generated:
heat-up, then MOVES extrusion moves) and, once OctoPrint prints it, samples /proc every 0.5 s
for SECONDS: the agent's peak RSS and its CPU time as % of one core, beside OctoPrint's own
RSS and CPU. It checks that status kept flowing (the file position reported to the controller
advanced during the window).

Usage: python3 scripts/measure-octoprint-agent.py [--bin target/release] [--seconds 60]
Build first: cargo build --release -p farm-agent -p farm-controller --bins
"""
import argparse, json, os, pathlib, shutil, socket, subprocess, sys, tempfile, time, urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
APP_KEY = "FARMAPPKEY0123456789ABCDEFGHIJKL"

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def call(url, token=None, data=None, ctype="application/json", key=None):
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if token: req.add_header("Authorization", f"Bearer {token}")
    if key: req.add_header("X-Api-Key", key)
    if data is not None: req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")

def wait(what, fn, limit=120):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        try:
            v = fn()
            if v: return v
        except Exception:
            pass
        time.sleep(0.1)
    sys.exit(f"timed out waiting for {what}")

def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"): return int(line.split()[1])
    return 0

def cpu_ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])

def gcode(moves):
    out = ["M140 S25", "M104 S35", "M109 S35", "G28", "G90", "M82", "G92 E0", "G1 Z0.3 F600"]
    e = 0.0
    for i in range(moves):
        e += 3.3
        out.append(f"G1 X{10 + (100 if i % 2 == 0 else 0)} Y{10 + (i % 100) * 0.4:.1f} E{e:.3f} F3000")
    out += ["M104 S0", "M140 S0", ""]
    return "\n".join(out).encode()

def octoprint(d):
    peers = pathlib.Path(os.environ.get("FARM_PEERS_DIR", ROOT / ".peers"))
    exe = peers / "octoprint/venv/bin/octoprint"
    if not exe.exists(): sys.exit(f"{exe} is missing: run scripts/install-peers.sh")
    base = d / "octoprint"; (base / "data/appkeys").mkdir(parents=True)
    (base / "config.yaml").write_text(
        "server:\n  firstRun: false\n  onlineCheck:\n    enabled: false\n  pluginBlacklist:\n    enabled: false\n"
        "  pythonEolCheck:\n    enabled: false\nplugins:\n  _disabled: [tracking, announcements, softwareupdate, errortracking, discovery]\n"
        "  tracking:\n    enabled: false\n  virtual_printer:\n    _config_version: 1\n    enabled: true\n    simulated_errors: []\n"
        "serial:\n  port: VIRTUAL\n  baudrate: 115200\n  autoconnect: true\n")
    subprocess.run([exe, "--basedir", base, "user", "add", "admin", "--password", "measure-pass", "--admin"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (base / "data/appkeys/keys.yaml").write_text(f"admin:\n- api_key: {APP_KEY}\n  app_id: farm-agent\n")
    port = free_port()
    p = subprocess.Popen([exe, "--basedir", base, "serve", "--host", "127.0.0.1", "--port", str(port), "--iknowwhatimdoing"],
                         stdout=open(d / "octoprint.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait("OctoPrint", lambda: call(f"{url}/api/version", key=APP_KEY))
    wait("Virtual Printer operational", lambda: call(f"{url}/api/connection", key=APP_KEY)["current"]["state"] == "Operational")
    return p, url

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release"); ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--moves", type=int, default=2000)
    a = ap.parse_args()
    d = pathlib.Path(tempfile.mkdtemp(prefix="farm-measure-op-"))
    procs = []
    try:
        op, url = octoprint(d); procs.append(op)
        http, mqtt = free_port(), free_port()
        (d / "c.toml").write_text(f'state_dir = "{d}/c"\nhttp_listen = "127.0.0.1:{http}"\nmqtt_listen = "127.0.0.1:{mqtt}"\n')
        ctl = subprocess.Popen([f"{a.bin}/farm-controller", "serve", "--config", str(d / "c.toml")], stderr=open(d / "c.log", "w"))
        procs.append(ctl)
        base = f"http://127.0.0.1:{http}/api/v1"
        wait("controller", lambda: call(f"{base}/health"))
        token = (d / "c" / "admin-token").read_text().strip()
        r = call(f"{base}/printers", token, json.dumps({"id": "op-1", "auto_eject": True}).encode())
        cfg = r["agent_config"].replace('state_dir = "/var/lib/farm-agent"', f'state_dir = "{d}/a"')
        cfg = cfg.replace('backend = "sim"', 'backend = "octoprint"') + f'\n[printer.octoprint]\nurl = "{url}"\napi_key = "{APP_KEY}"\n'
        (d / "op-1.toml").write_text(cfg)
        agent = subprocess.Popen([f"{a.bin}/farm-agent", "run", "--config", str(d / "op-1.toml")], stderr=open(d / "agent.log", "w"))
        procs.append(agent)
        printer = lambda: call(f"{base}/printers/op-1", token)
        wait("printer idle", lambda: printer()["state"] == "idle")
        call(f"{base}/jobs?name=measure.gcode&copies=1", token, gcode(a.moves), "application/octet-stream")
        # Past the heat-up: the Virtual Printer is streaming moves.
        wait("moves streaming", lambda: (printer().get("job") or {}).get("file_pos", 0) > 200)
        hz = os.sysconf("SC_CLK_TCK")
        watched = {"agent": agent, "octoprint": op}
        c0 = {k: cpu_ticks(p.pid) for k, p in watched.items()}
        peak = {k: 0 for k in watched}
        pos0 = printer()["job"]["file_pos"]
        t0 = time.monotonic()
        while time.monotonic() - t0 < a.seconds:
            for k, p in watched.items(): peak[k] = max(peak[k], rss_kb(p.pid))
            time.sleep(0.5)
        dt = time.monotonic() - t0
        cpu = {k: (cpu_ticks(p.pid) - c0[k]) / hz / dt * 100 for k, p in watched.items()}
        job = printer().get("job") or {}
        if job.get("file_pos", 0) <= pos0 or printer()["activity"] != "printing":
            sys.exit(f"the print did not keep going during the window (file_pos {pos0} → {job.get('file_pos')}); "
                     f"raise --moves or lower --seconds")
        print(f"agent (backend octoprint, 1 Hz status), {dt:.0f} s printing through OctoPrint "
              f"(file_pos {pos0} → {job['file_pos']} of {job['file_size']} bytes):")
        print(f"  farm-agent: RSS peak {peak['agent'] / 1024:.1f} MB, CPU {cpu['agent']:.2f} % of one core")
        print(f"  OctoPrint 1.11.8 (+ Virtual Printer): RSS peak {peak['octoprint'] / 1024:.1f} MB, "
              f"CPU {cpu['octoprint']:.1f} % of one core")
    finally:
        for p in procs: p.terminate()
        for p in procs:
            try: p.wait(timeout=15)
            except subprocess.TimeoutExpired: p.kill(); p.wait()
        shutil.rmtree(d, ignore_errors=True)

main()
