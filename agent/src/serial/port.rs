//! The serial device itself: opening it (8N1, no flow control, raw), reading it as lines and
//! writing to it, all in the task that owns the connection.
//!
//! Works the same on a USB CDC device (`/dev/ttyACM0`), a UART, and a pseudo-terminal (the
//! tests' Virtual Printer, Klipper's `/tmp/printer`). Lines are bounded ([`MAX_REPLY_BYTES`];
//! longer ones are cut, never buffered without limit); EOF or an I/O error (unplugged, the
//! other side of a pty closed) ends the port with a reason, and the session fails the job.
//!
//! Why not `tokio_serial::SerialStream` and a reader task (measured, BENCHMARKS.md "Serial
//! streaming"): a streamed line costs a few syscalls, and each extra wake-up costs more than
//! the agent's own work on the line. `tokio_serial` registers the device for writability too,
//! so every write is followed by an `EPOLLOUT` wake-up, and a reader task adds a task hop.
//! Here the device is registered for readability only and the session reads the port itself:
//! per line one wake-up, one write, and a read until the device has nothing more.

use mio_serial::{DataBits, FlowControl, Parity, SerialPortBuilderExt, SerialStream, StopBits};
use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::time::Duration;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Longest firmware line kept; the rest of a longer line is dropped.
pub const MAX_REPLY_BYTES: usize = 4096;
/// How long a write waits before trying again when the device's kernel buffer is full.
const WRITE_RETRY: Duration = Duration::from_millis(2);

/// Why the port could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open serial port {port}: {source}; check that the printer is plugged in and \
     switched on, that the path (better a /dev/serial/by-id/… link) is right, and that the \
     agent's user may use it (group dialout)"
)]
pub struct OpenError {
    port: String,
    source: std::io::Error,
}

/// An open serial device: lines in, bytes out. Dropping it closes the device, so a pty peer
/// sees the hang-up and a reconnect gets a fresh open.
pub struct Port {
    fd: AsyncFd<SerialStream>,
    buf: Box<[u8]>,
    /// Bytes of `buf` read but not yet split into lines.
    start: usize,
    end: usize,
    /// The line being assembled (without its line break).
    line: Vec<u8>,
    overlong: bool,
    /// Why the device is gone, once it is.
    closed: Option<String>,
}

/// Opens the device. The baud rate matters for UARTs only (USB CDC and ptys ignore it).
pub fn open(path: &Path, baud: u32) -> Result<Port, OpenError> {
    let name = path.display().to_string();
    let fail = |source: std::io::Error| OpenError {
        port: name.clone(),
        source,
    };
    let stream = mio_serial::new(&name, baud)
        .data_bits(DataBits::Eight)
        .parity(Parity::None)
        .stop_bits(StopBits::One)
        .flow_control(FlowControl::None)
        .open_native_async()
        .map_err(|e| fail(e.into()))?;
    // Readable only: writes go straight to the device (see `write_all`). Deprecated because an
    // arbitrary `AsRawFd` may close or swap its fd; `SerialStream` owns its fd for its whole
    // life and the `AsyncFd` owns the stream, so the condition of `register_with_interest`
    // holds (the safe call, as tokio-serial itself makes with `AsyncFd::new`).
    #[allow(deprecated)]
    let fd = AsyncFd::with_interest(stream, Interest::READABLE).map_err(fail)?;
    Ok(Port {
        fd,
        buf: vec![0; 4096].into_boxed_slice(),
        start: 0,
        end: 0,
        line: Vec::with_capacity(256),
        overlong: false,
        closed: None,
    })
}

impl Port {
    /// The next whole line already read, into `out` (lossily decoded: firmware noise is not
    /// UTF-8). No system call; `false` when none is complete yet.
    pub fn buffered_line(&mut self, out: &mut String) -> bool {
        while self.start < self.end {
            let b = self.buf[self.start];
            self.start += 1;
            match b {
                b'\n' | b'\r' => {
                    self.overlong = false;
                    if !self.line.is_empty() {
                        out.clear();
                        out.push_str(&String::from_utf8_lossy(&self.line));
                        self.line.clear();
                        return true;
                    }
                }
                _ if self.line.len() >= MAX_REPLY_BYTES => self.overlong = true,
                _ if self.overlong => {}
                _ => self.line.push(b),
            }
        }
        false
    }

    /// Waits for the next line, into `out`. `Err` is why the device is gone. Cancel-safe:
    /// bytes read stay in the port.
    pub async fn next_line(&mut self, out: &mut String) -> Result<(), String> {
        loop {
            if self.buffered_line(out) {
                return Ok(());
            }
            if let Some(why) = &self.closed {
                return Err(why.clone());
            }
            self.fill().await;
        }
    }

    /// One read of whatever the device has (after waiting for it to be readable).
    async fn fill(&mut self) {
        let mut guard = match self.fd.readable().await {
            Ok(g) => g,
            Err(e) => {
                self.closed = Some(format!("the serial port failed: {e}"));
                return;
            }
        };
        let mut device: &SerialStream = guard.get_inner();
        match device.read(&mut self.buf) {
            Ok(0) => self.closed = Some("the serial port was closed (end of file)".into()),
            // Readiness stays set: the next call reads again at once, and a reply that came
            // meanwhile is taken without parking the thread. Clearing it on a short read (one
            // read fewer per line) cost ~10 % of flat-out throughput (BENCHMARKS.md).
            Ok(n) => (self.start, self.end) = (0, n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => guard.clear_ready(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // EIO is what a pty or an unplugged USB device gives once the other side is gone.
            Err(e) => {
                self.closed = Some(format!(
                    "the serial port failed: {e} (printer unplugged, switched off, or reset)"
                ));
            }
        }
    }

    /// Writes all of `bytes`. The streamer keeps what is unacknowledged within the firmware's
    /// RX buffer (a few hundred bytes), far below the kernel's, so a full kernel buffer means
    /// the device stopped draining: that is retried every few ms (the watchdog judges the
    /// stall) instead of asking the reactor for writability, which would wake the agent
    /// after every line.
    pub async fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        let fail = |e: std::io::Error| {
            format!("cannot write to the serial port: {e} (printer unplugged?)")
        };
        while !bytes.is_empty() {
            let mut device: &SerialStream = self.fd.get_ref();
            match device.write(bytes) {
                Ok(0) => return Err(fail(ErrorKind::WriteZero.into())),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    tokio::time::sleep(WRITE_RETRY).await;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(())
    }
}
