#!/usr/bin/env python3
"""Measures the farm's footprint and start-up figures for BENCHMARKS.md.

1. `farm-demo`: seconds from launch to the first printer printing (polled every
   50 ms through the API), and the demo process's RSS (controller + 12 in-process agents).
2. `farm-controller serve` + N separate `farm-agent` processes (sim back end): RSS and CPU of
   the controller and of each agent, sampled from /proc while the farm prints.

Usage: python3 scripts/measure-farm.py [--bin target/release] [--printers 12] [--seconds 30]
Build first: cargo build --release --workspace --bins
"""
import argparse, json, os, pathlib, re, shutil, socket, subprocess, sys, tempfile, time, urllib.request

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def get(url, token=None, data=None, ctype="application/json"):
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if token: req.add_header("Authorization", f"Bearer {token}")
    if data is not None: req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")

def wait(what, fn, limit=60):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        try:
            v = fn()
            if v: return v
        except Exception:
            pass
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")

def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"): return int(line.split()[1])
    return 0

def cpu_ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])

def demo(bindir, printers):
    port = free_port()
    t0 = time.monotonic()
    p = subprocess.Popen([f"{bindir}/farm-demo", "--printers", str(printers), "--http", f"127.0.0.1:{port}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        wait("first printer printing", lambda: any(x.get("activity") == "printing" for x in get(f"{base}/printers")["items"]))
        first = time.monotonic() - t0
        time.sleep(10)
        return first, rss_kb(p.pid)
    finally:
        p.terminate(); p.wait()

def farm(bindir, printers, seconds):
    d = pathlib.Path(tempfile.mkdtemp(prefix="farm-measure-"))
    http, mqtt = free_port(), free_port()
    (d / "c.toml").write_text(f'state_dir = "{d}/c"\nhttp_listen = "127.0.0.1:{http}"\nmqtt_listen = "127.0.0.1:{mqtt}"\n')
    procs = []
    ctl = subprocess.Popen([f"{bindir}/farm-controller", "serve", "--config", str(d / "c.toml")], stderr=open(d / "c.log", "w"))
    procs.append(ctl)
    try:
        base = f"http://127.0.0.1:{http}/api/v1"
        wait("controller", lambda: get(f"{base}/health"))
        token = (d / "c" / "admin-token").read_text().strip()
        agents = []
        for i in range(printers):
            pid = f"m-{i:02d}"
            r = get(f"{base}/printers", token, json.dumps({"id": pid, "auto_eject": True}).encode())
            cfg = r["agent_config"].replace('state_dir = "/var/lib/farm-agent"', f'state_dir = "{d}/a/{pid}"')
            cfg = cfg.replace("speed = 1.0", "speed = 10.0")
            (d / f"{pid}.toml").write_text(cfg)
            a = subprocess.Popen([f"{bindir}/farm-agent", "run", "--config", str(d / f"{pid}.toml")], stderr=open(d / f"{pid}.log", "w"))
            procs.append(a); agents.append(a)
        sample = (pathlib.Path(__file__).resolve().parent.parent / "demo/samples/spool-spacer.gcode").read_bytes()
        get(f"{base}/jobs?name=spool-spacer.gcode&copies={printers * 3}", token, sample, "application/octet-stream")
        wait("all printing", lambda: sum(x.get("activity") == "printing" for x in get(f"{base}/printers", token)["items"]) == printers)
        hz = os.sysconf("SC_CLK_TCK")
        c0 = {p.pid: cpu_ticks(p.pid) for p in procs}
        t0 = time.monotonic()
        peak = {p.pid: 0 for p in procs}
        while time.monotonic() - t0 < seconds:
            for p in procs: peak[p.pid] = max(peak[p.pid], rss_kb(p.pid))
            time.sleep(0.5)
        dt = time.monotonic() - t0
        cpu = {p.pid: (cpu_ticks(p.pid) - c0[p.pid]) / hz / dt * 100 for p in procs}
        a_rss = [peak[a.pid] for a in agents]; a_cpu = [cpu[a.pid] for a in agents]
        return {
            "controller_rss_mb": peak[ctl.pid] / 1024, "controller_cpu_pct": cpu[ctl.pid],
            "agent_rss_mb_max": max(a_rss) / 1024, "agent_rss_mb_mean": sum(a_rss) / len(a_rss) / 1024,
            "agent_cpu_pct_max": max(a_cpu), "agent_cpu_pct_mean": sum(a_cpu) / len(a_cpu), "seconds": dt,
        }
    finally:
        for p in procs: p.terminate()
        for p in procs: p.wait()
        shutil.rmtree(d, ignore_errors=True)

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release"); ap.add_argument("--printers", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=30)
    a = ap.parse_args()
    first, demo_rss = demo(a.bin, a.printers)
    print(f"demo: first printer printing after {first:.2f} s; demo process RSS {demo_rss / 1024:.1f} MB "
          f"(controller + {a.printers} in-process agents)")
    r = farm(a.bin, a.printers, a.seconds)
    print(f"serve + {a.printers} agent processes, {r['seconds']:.0f} s printing at 1 Hz status:")
    print(f"  controller: RSS {r['controller_rss_mb']:.1f} MB, CPU {r['controller_cpu_pct']:.1f} % of one core")
    print(f"  agent: RSS max {r['agent_rss_mb_max']:.1f} MB (mean {r['agent_rss_mb_mean']:.1f}), "
          f"CPU max {r['agent_cpu_pct_max']:.2f} % (mean {r['agent_cpu_pct_mean']:.2f})")

main()
