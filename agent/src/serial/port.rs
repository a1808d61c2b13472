//! The serial device itself: opening it (8N1, no flow control, raw) and reading it as lines.
//!
//! Works the same on a USB CDC device (`/dev/ttyACM0`), a UART, and a pseudo-terminal (the
//! tests' Virtual Printer, Klipper's `/tmp/printer`). Reading happens in its own task, which
//! turns bytes into bounded lines ([`MAX_REPLY_BYTES`]; longer ones are cut, never buffered
//! without limit) and ends with [`PortEvent::Closed`] when the device goes away (unplugged,
//! the other side of a pty closed): the session then fails the job instead of waiting.

use std::path::Path;
use tokio::io::{AsyncReadExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio_serial::{DataBits, FlowControl, Parity, SerialPortBuilderExt, SerialStream, StopBits};

/// Longest firmware line kept; the rest of a longer line is dropped.
pub const MAX_REPLY_BYTES: usize = 4096;

/// Why the port could not be opened.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot open serial port {port}: {source}; check that the printer is plugged in and \
     switched on, that the path (better a /dev/serial/by-id/… link) is right, and that the \
     agent's user may use it (group dialout)"
)]
pub struct OpenError {
    port: String,
    source: tokio_serial::Error,
}

/// Opens the device. The baud rate matters for UARTs only (USB CDC and ptys ignore it).
pub fn open(path: &Path, baud: u32) -> Result<SerialStream, OpenError> {
    let name = path.display().to_string();
    tokio_serial::new(&name, baud)
        .data_bits(DataBits::Eight)
        .parity(Parity::None)
        .stop_bits(StopBits::One)
        .flow_control(FlowControl::None)
        .open_native_async()
        .map_err(|source| OpenError { port: name, source })
}

/// What the reader task reports.
#[derive(Debug)]
pub enum PortEvent {
    /// One line, without its line break, lossily decoded (firmware noise is not UTF-8).
    Line(String),
    /// The device is gone (or failed): the reason, in words for the operator.
    Closed(String),
}

/// Splits the stream: the writer stays with the caller, the reader becomes a task that sends
/// [`PortEvent`]s. The task ends after `Closed`, or when the receiver is dropped.
pub fn split(
    stream: SerialStream,
) -> (
    WriteHalf<SerialStream>,
    mpsc::Receiver<PortEvent>,
    AbortOnDrop,
) {
    let (read, write) = tokio::io::split(stream);
    // Bounded: a flood of firmware output waits in the OS buffers instead of our memory.
    let (tx, rx) = mpsc::channel(512);
    let task = tokio::spawn(read_lines(read, tx));
    (write, rx, AbortOnDrop(task))
}

/// The reader task's handle: dropping it stops the task, which releases its half of the
/// port, so the device is really closed when a connection ends (a pty peer sees the hang-up,
/// a reconnect gets a fresh open).
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn read_lines(mut read: ReadHalf<SerialStream>, tx: mpsc::Sender<PortEvent>) {
    let mut buf = vec![0u8; 4096];
    let mut line: Vec<u8> = Vec::with_capacity(256);
    let mut overlong = false;
    loop {
        let n = match read.read(&mut buf).await {
            Ok(0) => {
                let _ = tx
                    .send(PortEvent::Closed(
                        "the serial port was closed (end of file)".into(),
                    ))
                    .await;
                return;
            }
            Ok(n) => n,
            Err(e) => {
                // EIO is what a pty or an unplugged USB device gives once the other side is gone.
                let _ = tx
                    .send(PortEvent::Closed(format!(
                        "the serial port failed: {e} (printer unplugged, switched off, or reset)"
                    )))
                    .await;
                return;
            }
        };
        for &b in &buf[..n] {
            match b {
                b'\n' | b'\r' => {
                    if !line.is_empty() {
                        let text = String::from_utf8_lossy(&line).into_owned();
                        line.clear();
                        if tx.send(PortEvent::Line(text)).await.is_err() {
                            return;
                        }
                    }
                    overlong = false;
                }
                _ if line.len() >= MAX_REPLY_BYTES => overlong = true,
                _ if overlong => {}
                _ => line.push(b),
            }
        }
    }
}
