#!/usr/bin/env python3
"""Serial streaming benchmark: the agent's serial back end against OctoPrint's own streaming,
both to OctoPrint's Virtual Printer on a pseudo-terminal (serial-benchmark.md).

Run with the OctoPrint venv's python (scripts/install-peers.sh makes it), after
`cargo build --release -p farm-agent -p farm-controller`; scripts/bench-serial.sh does both.

    .peers/octoprint/venv/bin/python scripts/bench-serial.py [--rounds 5] [--moves 20000]

For each file (motion-free, motion-free with 1 % line noise, realistic) it runs A B A B …:
A = `farm-agent stream` (the agent's serial back end, the same code path as a job), B = OctoPrint
1.11.8 printing the same file on the same kind of bridge (`serial.additionalPorts`). Each run gets
a fresh Virtual Printer; its accepted-command log is checked: every command of the file exactly
once, in order (zero lost, zero doubled). Prints a JSON report and a Markdown table.
With --footprint S, also runs a controller and one `farm-agent run` on the serial back end
(1 Hz status) printing a realistic file, and samples RSS and CPU of the agent and of the Virtual
Printer for S seconds.
"""
import argparse
import json
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
BRIDGE = ROOT / "tests/peers/vprinter.py"
MAKE = ROOT / "benches/serial/make-gcode.py"
KEY = "BENCH0000000000000000000000000000"
HOST_CMDS = {"M115", "M155 S2", "M400", "M105"}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http(url, data=None, method=None, key=KEY, ctype="application/json", bearer=False):
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    if bearer:
        if key:
            req.add_header("Authorization", f"Bearer {key}")
    else:
        req.add_header("X-Api-Key", key)
    if data is not None:
        req.add_header("Content-Type", ctype)
    with urllib.request.urlopen(req, timeout=30) as r:
        body = r.read()
        return json.loads(body) if body else None


def wait(what, fn, limit=120, step=0.02):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        try:
            v = fn()
            if v:
                return v
        except Exception:
            pass
        time.sleep(step)
    sys.exit(f"timed out waiting for {what}")


def commands(path):
    out = []
    for line in open(path):
        c = line.split(";")[0].strip()
        if c:
            out.append(c)
    return out


class Bridge:
    def __init__(self, d, name, extra=()):
        self.link = d / f"{name}.tty"
        self.acc = d / f"{name}.accepted"
        if self.acc.exists():
            self.acc.unlink()
        self.p = subprocess.Popen(
            [sys.executable, str(BRIDGE), "--link", str(self.link), "--accepted-log", str(self.acc),
             "--set", "simulated_errors=[]", "--set", "sendWait=false", *extra],
            stdout=subprocess.PIPE, stderr=open(d / f"{name}.log", "w"), text=True)
        for line in self.p.stdout:
            if line.strip() == "READY":
                break

    def check(self, want):
        """(lost_or_doubled, accepted_job_commands): the accepted log against the file."""
        fileset = set(want)
        got = [l.rstrip("\n").split("\t", 1)[1] for l in open(self.acc)]
        got = [c for c in got if c in fileset]
        ok = got == want
        return (0 if ok else abs(len(got) - len(want)) or 1), len(got)

    def stop(self):
        self.p.terminate()
        self.p.wait()


class OctoPrint:
    def __init__(self, d, link):
        self.base = d / "octoprint"
        self.base.mkdir()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        (self.base / "config.yaml").write_text(json.dumps({
            "server": {"firstRun": False, "onlineCheck": {"enabled": False},
                       "pluginBlacklist": {"enabled": False}, "pythonEolCheck": {"enabled": False}},
            "plugins": {"tracking": {"enabled": False},
                        "_disabled": ["tracking", "announcements", "softwareupdate", "errortracking", "discovery"]},
            "api": {"key": KEY},
            "serial": {"port": str(link), "baudrate": 115200, "autoconnect": False,
                       "additionalPorts": [str(link)]},
        }))
        octo = [str(pathlib.Path(sys.executable).parent / "octoprint"), "--basedir", str(self.base)]
        subprocess.run(octo + ["user", "add", "admin", "--password", "bench-pass", "--admin"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.p = subprocess.Popen(octo + ["serve", "--host", "127.0.0.1", "--port", str(port), "--iknowwhatimdoing"],
                                  stdout=subprocess.DEVNULL, stderr=open(d / "octoprint.log", "w"))
        wait("OctoPrint", lambda: http(f"{self.url}/api/version"), limit=180, step=0.2)
        self.uploaded = set()

    def run(self, link, path):
        http(f"{self.url}/api/connection", json.dumps({"command": "disconnect"}).encode())
        wait("disconnected", lambda: http(f"{self.url}/api/connection")["current"]["state"] == "Closed")
        http(f"{self.url}/api/connection",
             json.dumps({"command": "connect", "port": str(link), "baudrate": 115200}).encode())
        wait("operational", lambda: http(f"{self.url}/api/connection")["current"]["state"] == "Operational", limit=60)
        name = pathlib.Path(path).name
        if name not in self.uploaded:
            boundary = "benchboundary"
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                    f"Content-Type: application/octet-stream\r\n\r\n").encode() + pathlib.Path(path).read_bytes() + \
                f"\r\n--{boundary}--\r\n".encode()
            http(f"{self.url}/api/files/local", body, ctype=f"multipart/form-data; boundary={boundary}")
            self.uploaded.add(name)
        t0 = time.monotonic()
        http(f"{self.url}/api/files/local/{name}", json.dumps({"command": "select", "print": True}).encode())
        wait("printing", lambda: http(f"{self.url}/api/printer")["state"]["flags"]["printing"], limit=60, step=0.01)
        wait("done", lambda: not http(f"{self.url}/api/printer")["state"]["flags"]["printing"], limit=900, step=0.05)
        wall = time.monotonic() - t0
        job = http(f"{self.url}/api/job")
        return job["job"].get("lastPrintTime") or wall

    def stop(self):
        self.p.terminate()
        self.p.wait()


def agent_run(bindir, link, path):
    out = subprocess.run([str(bindir / "farm-agent"), "stream", "--port", str(link), str(path)],
                         capture_output=True, text=True, env={**os.environ, "RUST_LOG": "warn"})
    s = json.loads(out.stdout)
    if s["outcome"] != "completed":
        sys.exit(f"agent run failed: {s}")
    return s["seconds"]


def throughput(bindir, d, moves, rounds):
    files = {}
    for label, args in [("motion-free", ["--motion-free"]), ("realistic", [])]:
        p = d / f"{label}.gcode"
        p.write_text(subprocess.run([sys.executable, str(MAKE), str(moves), *args],
                                    capture_output=True, text=True, check=True).stdout)
        files[label] = p
    cases = [("motion-free", files["motion-free"], []),
             ("motion-free, 1 % line noise", files["motion-free"], ["--corrupt-every", "100"]),
             ("realistic", files["realistic"], [])]
    first = Bridge(d, "octo-link")
    octo = OctoPrint(d, first.link)
    first.stop()
    report = []
    try:
        for label, path, extra in cases:
            want = commands(path)
            res = {"agent": [], "octoprint": []}
            bad = {"agent": 0, "octoprint": 0}
            for r in range(rounds):
                for host in ("agent", "octoprint"):
                    b = Bridge(d, "octo-link" if host == "octoprint" else "agent-link", extra)
                    try:
                        secs = agent_run(bindir, b.link, path) if host == "agent" else octo.run(b.link, path)
                    finally:
                        b.stop()
                    lost, n = b.check(want)
                    bad[host] += lost
                    res[host].append(len(want) / secs)
                    print(f"{label:28} round {r + 1} {host:9} {len(want) / secs:8.0f} lines/s  "
                          f"accepted {n}/{len(want)}", file=sys.stderr, flush=True)
            a, o = statistics.median(res["agent"]), statistics.median(res["octoprint"])
            report.append({"file": label, "commands": len(want), "agent_lines_per_s": a, "octoprint_lines_per_s": o,
                           "ratio": a / o, "agent_runs": res["agent"], "octoprint_runs": res["octoprint"],
                           "lost_or_doubled": bad})
    finally:
        octo.stop()
    return report


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def footprint(bindir, d, seconds, per_turn=60):
    """A controller and one serial agent (1 Hz status) printing a realistic file."""
    vp = Bridge(d, "fp")
    http_port, mqtt = free_port(), free_port()
    (d / "c.toml").write_text(f'state_dir = "{d}/c"\nhttp_listen = "127.0.0.1:{http_port}"\nmqtt_listen = "127.0.0.1:{mqtt}"\n')
    ctl = subprocess.Popen([str(bindir / "farm-controller"), "serve", "--config", str(d / "c.toml")],
                           stderr=open(d / "c.log", "w"))
    agent = None
    try:
        base = f"http://127.0.0.1:{http_port}/api/v1"
        wait("controller", lambda: http(f"{base}/health", bearer=True, key=""), limit=60)
        token = (d / "c" / "admin-token").read_text().strip()
        r = http(f"{base}/printers", json.dumps({"id": "s-1", "auto_eject": True}).encode(), key=token, bearer=True)
        cfg = r["agent_config"].replace('state_dir = "/var/lib/farm-agent"', f'state_dir = "{d}/a"')
        cfg = cfg.replace('backend = "sim"', 'backend = "serial"') + f'\n[printer.serial]\nport = "{vp.link}"\n'
        (d / "s-1.toml").write_text(cfg)
        agent = subprocess.Popen([str(bindir / "farm-agent"), "run", "--config", str(d / "s-1.toml")],
                                 stderr=open(d / "s-1.log", "w"))
        job = d / "footprint.gcode"
        # 2 mm segments at F6000: 20 ms of real motion each, 2 ms on the Virtual Printer (it
        # sleeps 10 % of a move), so several hundred lines/s: a busy real print sped up tenfold.
        moves = int(seconds * 1500) + 20000
        job.write_text(subprocess.run([sys.executable, str(MAKE), str(moves), "--per-turn", str(per_turn)],
                                      capture_output=True, text=True, check=True).stdout)
        http(f"{base}/jobs?name=footprint.gcode&copies=1", job.read_bytes(), key=token, bearer=True,
             ctype="application/octet-stream")
        wait("printing", lambda: http(f"{base}/printers/s-1", key=token, bearer=True)["state"] == "busy", limit=60)
        t_start = time.monotonic()
        time.sleep(2)
        hz = os.sysconf("SC_CLK_TCK")
        procs = {"agent": agent.pid, "vprinter": vp.p.pid}
        c0 = {k: cpu_ticks(p) for k, p in procs.items()}
        peak = {k: 0 for k in procs}
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            for k, p in procs.items():
                peak[k] = max(peak[k], rss_kb(p))
            time.sleep(0.5)
        dt = time.monotonic() - t0
        p = http(f"{base}/printers/s-1", key=token, bearer=True)
        jobs = http(f"{base}/jobs", key=token, bearer=True)["items"]
        done = jobs[0]["progress"] if jobs else 0
        return {"seconds": dt, "still_printing": p["state"] == "busy",
                "lines_per_s": done * moves / (time.monotonic() - t_start),
                **{f"{k}_rss_mb": peak[k] / 1024 for k in procs},
                **{f"{k}_cpu_pct": (cpu_ticks(p) - c0[k]) / hz / dt * 100 for k, p in procs.items()}}
    finally:
        for p in (agent, ctl):
            if p:
                p.terminate()
                p.wait()
        vp.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=str(ROOT / "target/release"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--moves", type=int, default=20000)
    ap.add_argument("--footprint", type=float, default=0, metavar="SECONDS")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--footprint-per-turn", type=int, default=60, metavar="N",
                    help="segments per 40 mm circle in the footprint file: 60 = 2 mm segments at the Virtual "
                         "Printer's tenfold time-lapse (~750 lines/s); 10 = ~12.5 mm ones, ~80 lines/s, the line "
                         "rate of the same 2 mm print in real time")
    a = ap.parse_args()
    bindir = pathlib.Path(a.bin)
    d = pathlib.Path(tempfile.mkdtemp(prefix="bench-serial-"))
    out = {"machine": {"cpus": os.cpu_count(), "uname": " ".join(os.uname())}}
    try:
        if not a.skip_throughput:
            out["throughput"] = throughput(bindir, d, a.moves, a.rounds)
        if a.footprint:
            out["footprint"] = footprint(bindir, d, a.footprint, a.footprint_per_turn)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print(json.dumps(out, indent=2))
    for t in out.get("throughput", []):
        print(f"| {t['file']} | {t['commands']} | {t['agent_lines_per_s']:.0f} | {t['octoprint_lines_per_s']:.0f} "
              f"| {t['ratio']:.2f}x | {t['lost_or_doubled']['agent']} / {t['lost_or_doubled']['octoprint']} |")


if __name__ == "__main__":
    main()
