#!/usr/bin/env python3
"""OctoPrint's Virtual Printer (a Marlin emulation) on a pseudo-terminal, for the serial tests.

Run it with the python of a venv that has octoprint 1.11.8 (scripts/install-peers.sh). OctoPrint
itself is not started: only its `VirtualPrinter` class, bridged to a pty. Prints

    PTY=/dev/pts/N
    LINK=<path>
    PID=<pid>
    READY

and serves until SIGTERM. Facts this follows (peers.md section 2):

* Every open of the slave is a power-on: a fresh VirtualPrinter with its `start` banner, like a
  USB Marlin that resets on DTR (`--no-reset-on-open` keeps one printer). No process here keeps
  the slave open, so POLLHUP on the master says when the client opened or closed it.
* Bridge rule 1: the printer queues most replies without a line break (OctoPrint reads one item
  per readline); on a byte stream they would run together, so a missing `\\n` is appended.
* Bridge rule 2: its reader handles one line per dequeued chunk, so exactly one line is fed per
  `write()`, honouring partial writes (its 64-character rxBuffer pushes back).
* Bridge rule 3 (found here, with send-ahead): `write()` blocks on a full rxBuffer while holding
  the printer's `_incoming_lock`, and its reader needs that lock to answer a bad line
  (`_triggerResend`): a resend while the buffer is full deadlocks it until the 10 s write
  timeout. So the bridge waits for room in the buffer first, without the lock, and `write()`
  never blocks. (OctoPrint never meets this: it sends one line at a time.)

Test hooks (ours, not OctoPrint's):

* `--accepted-log FILE`: one line `N<TAB>command` for every command the printer accepted and
  processed (after checksum and line-number checks, after its own fault injection), so a test
  can prove that no line was lost or doubled. `N` is the printer's lastN at that moment.
* `--corrupt-every K`: flip one bit in every K-th numbered line on its way in, as line noise
  would: the printer sees a checksum mismatch and asks for a resend through its own code.
  (Its own `resend_ratio` setting cannot be used for this: it drops the line it rejects and
  asks for the next one, so the line is lost whatever the host does.)
* SIGUSR1: "unplug and replug": the pty is closed (the client reads EIO) and a new one is made
  behind the same link.
* `--set key=JSON`: Virtual Printer settings, e.g. `--set 'simulated_errors=[]'`.
"""

import argparse
import faulthandler
import json
import os
import select
import signal
import sys
import tempfile
import threading
import time
import tty


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--link", required=True, help="symlink to create for the pty slave")
    p.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    p.add_argument("--accepted-log")
    p.add_argument("--corrupt-every", type=int, default=0)
    p.add_argument("--no-reset-on-open", action="store_true")
    p.add_argument("--data-dir", help="virtual SD card and EEPROM (default: a temp dir)")
    return p.parse_args()


class Settings:
    """The part of OctoPrint's PluginSettings that VirtualPrinter uses, over a dict."""

    def __init__(self, values, basefolder):
        self.values = values
        self.basefolder = basefolder

    def get(self, path, merged=False, **kwargs):
        v = self.values
        for k in path:
            if not isinstance(v, dict) or k not in v:
                return None
            v = v[k]
        return v

    def get_int(self, path, **kwargs):
        v = self.get(path)
        return None if v is None else int(v)

    def get_float(self, path, **kwargs):
        v = self.get(path)
        return None if v is None else float(v)

    def get_boolean(self, path, **kwargs):
        return bool(self.get(path))

    def global_get_basefolder(self, name, **kwargs):
        d = os.path.join(self.basefolder, name)
        os.makedirs(d, exist_ok=True)
        return d


class Profiles:
    def get_current_or_default(self):
        return {
            "volume": {
                "width": 200,
                "depth": 200,
                "height": 200,
                "origin": "lowerleft",
                "formFactor": "rectangular",
                "custom_box": False,
            }
        }


class Hooks:
    def get_hooks(self, name):
        return {}


class Bridge:
    def __init__(self, args):
        from octoprint.plugins import virtual_printer
        from octoprint.plugins.virtual_printer import virtual

        self.virtual = virtual
        virtual.plugin_manager = lambda: Hooks()
        values = virtual_printer.VirtualPrinterPlugin().get_settings_defaults()
        for kv in args.set:
            k, v = kv.split("=", 1)
            values[k] = json.loads(v)
        self.data = args.data_dir or tempfile.mkdtemp(prefix="vprinter-")
        self.settings = Settings(values, self.data)
        self.args = args
        self.printer = None
        self.numbered = 0
        self.unplug = threading.Event()
        self.accepted = open(args.accepted_log, "a", buffering=1) if args.accepted_log else None
        if self.accepted:
            self.hook_accepted()

    def hook_accepted(self):
        """Wraps the class's command regex: it is matched once per accepted command."""
        bridge = self
        original = self.virtual.VirtualPrinter.command_regex

        class Logged:
            def match(self, data):
                p = bridge.printer
                n = p.lastN if p is not None else -1
                bridge.accepted.write(f"{n}\t{data.strip()}\n")
                return original.match(data)

        self.virtual.VirtualPrinter.command_regex = Logged()

    def new_printer(self):
        if self.printer is not None and not self.args.no_reset_on_open:
            self.printer.close()
            self.printer = None
        if self.printer is None:
            self.printer = self.virtual.VirtualPrinter(
                self.settings, Profiles(), self.data, None, read_timeout=0.2, write_timeout=10
            )
        return self.printer

    def make_pty(self):
        master, slave = os.openpty()
        tty.setraw(slave)
        path = os.ttyname(slave)
        os.close(slave)  # only clients hold the slave: POLLHUP tells when one opens/closes it
        tmp = self.args.link + ".tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(path, tmp)
        os.replace(tmp, self.args.link)
        return master, path

    def writer(self, printer, master, stop):
        """Printer → pty, one reply per line (rule 1)."""
        while not stop.is_set():
            try:
                line = printer.readline()
            except Exception:
                return
            if not line:
                if printer.outgoing is None:
                    return
                continue
            if not line.endswith(b"\n"):
                line += b"\n"
            try:
                os.write(master, line)
            except OSError:
                return

    def feed(self, printer, line):
        """Pty → printer, one line per write, partial writes honoured (rule 2)."""
        if line.startswith(b"N") and b"M110" not in line:
            self.numbered += 1
            k = self.args.corrupt_every
            if k and self.numbered % k == 0 and b" " in line:
                i = line.index(b" ") + 1
                line = line[:i] + bytes([line[i] ^ 1]) + line[i + 1 :]
                print(f"corrupted {line.decode(errors='replace').strip()}", file=sys.stderr, flush=True)
        q = printer.incoming
        while line and q is not None:
            # Wait for room *outside* the printer's lock (rule 3).
            with q.not_full:
                while q.maxsize - q._qsize() <= 0 and printer.incoming is not None:
                    q.not_full.wait(0.1)
            n = printer.write(line)
            if not n:
                return
            line = line[n:]

    def serve_client(self, master):
        """One open..close of the slave by a client."""
        printer = self.new_printer()
        stop = threading.Event()
        t = threading.Thread(target=self.writer, args=(printer, master, stop), daemon=True)
        t.start()
        buf = b""
        poller = select.poll()
        poller.register(master, select.POLLIN)
        try:
            while not self.unplug.is_set():
                events = poller.poll(200)
                if not events:
                    continue
                _, ev = events[0]
                if ev & select.POLLIN:
                    try:
                        data = os.read(master, 4096)
                    except OSError:
                        data = b""
                    if data:
                        buf += data
                        while b"\n" in buf:
                            line, buf = buf.split(b"\n", 1)
                            self.feed(printer, line + b"\n")
                        continue
                if ev & (select.POLLHUP | select.POLLERR) or not ev & select.POLLIN:
                    return  # the client closed the port
        finally:
            stop.set()
            if not self.args.no_reset_on_open:
                printer.close()
                self.printer = None

    def run(self):
        master, path = self.make_pty()
        print(f"PTY={path}\nLINK={self.args.link}\nPID={os.getpid()}\nREADY", flush=True)
        while True:
            if self.unplug.is_set():
                self.unplug.clear()
                os.close(master)
                master, path = self.make_pty()
                print(f"REPLUGGED PTY={path}", flush=True)
            # Wait for a client: POLLHUP stays set while nobody holds the slave.
            ev = select.poll()
            ev.register(master, select.POLLIN)
            events = ev.poll(50)
            if events and events[0][1] & select.POLLHUP:
                time.sleep(0.05)  # poll() does not block on a hung-up master
                continue
            self.serve_client(master)


def main():
    args = parse_args()
    bridge = Bridge(args)

    def stop(*_):
        try:
            os.unlink(args.link)
        except OSError:
            pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGUSR1, lambda *_: bridge.unplug.set())
    # Every thread's stack on stderr, for a printer that seems stuck.
    faulthandler.register(signal.SIGUSR2, all_threads=True)
    bridge.run()


if __name__ == "__main__":
    sys.exit(main())
