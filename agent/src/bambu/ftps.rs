//! Job-file upload to the printer over FTPS: implicit TLS (TLS from the first byte, port
//! 990), user `bblp`, the access code as password, `PROT P`, passive mode, binary `STOR`,
//! then `SIZE` to check the printer has every byte (OpenBambuAPI `ftp.md`; pybambu
//! `ImplicitFTP_TLS`, `_sync_ftp_upload`).
//!
//! Only the seven commands an upload needs, so a small client of our own over tokio-rustls
//! (ring), which the agent has already; an FTP crate (suppaftp) was not evaluated for a
//! ring-only build in the time this was written. The data
//! connection uses the same rustls config as the control connection, so rustls resumes the
//! control connection's TLS session on it (printers want that, per pybambu). A `426` after the
//! upload is tolerated, as pybambu does, when `SIZE` then reports the full file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const TIMEOUT: Duration = Duration::from_secs(15);

/// Why an upload failed; each says what to check.
#[derive(Debug, thiserror::Error)]
pub enum FtpsError {
    #[error(
        "cannot reach the printer's FTPS port {addr}: {source}; check printer.bambu.host and that the printer is on"
    )]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS with the printer's FTPS server failed: {0}")]
    Tls(std::io::Error),
    #[error("the printer's FTPS server stopped answering ({0})")]
    Io(#[from] std::io::Error),
    #[error(
        "the printer refused the access code (FTPS {0}); check printer.bambu.access_code against the code on the printer's screen (it changes when LAN mode is toggled)"
    )]
    Login(String),
    #[error("the printer's FTPS server answered {got:?} to {command}; expected {want}xx")]
    Unexpected {
        command: &'static str,
        got: String,
        want: u16,
    },
    #[error(
        "the printer stored {stored} bytes of {sent}; the upload was cut off, try again (is its storage full?)"
    )]
    Short { stored: u64, sent: u64 },
    #[error("the FTPS server timed out ({0})")]
    Timeout(&'static str),
}

type Control = BufReader<TlsStream<TcpStream>>;

async fn within<T>(what: &'static str, f: impl Future<Output = T>) -> Result<T, FtpsError> {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .map_err(|_| FtpsError::Timeout(what))
}

async fn tcp(host: &str, port: u16) -> Result<TcpStream, FtpsError> {
    let addr = format!("{host}:{port}");
    within("connect", TcpStream::connect(&addr))
        .await?
        .map_err(|source| FtpsError::Connect { addr, source })
}

async fn tls(
    tls: &TlsConnector,
    host: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, FtpsError> {
    // The verifier checks the serial, not this name; an IP or a host name both do.
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| FtpsError::Tls(std::io::Error::other(e)))?;
    within("TLS handshake", tls.connect(name, tcp))
        .await?
        .map_err(FtpsError::Tls)
}

/// One reply: its code and its (last) line.
async fn reply<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut BufReader<S>,
) -> Result<(u16, String), FtpsError> {
    let mut line = String::new();
    loop {
        line.clear();
        if within("reply", c.read_line(&mut line)).await?? == 0 {
            return Err(FtpsError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let b = line.as_bytes();
        // A multi-line reply ends with "ddd " (a space after the code).
        if b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) && b[3] == b' ' {
            let code = line[..3].parse().unwrap_or(0);
            return Ok((code, line.trim_end().to_string()));
        }
    }
}

async fn send(
    c: &mut Control,
    command: &'static str,
    arg: &str,
    want: u16,
) -> Result<String, FtpsError> {
    let text = if arg.is_empty() {
        format!("{command}\r\n")
    } else {
        format!("{command} {arg}\r\n")
    };
    c.get_mut().write_all(text.as_bytes()).await?;
    let (code, line) = reply(c).await?;
    if code / 100 != want {
        return Err(FtpsError::Unexpected {
            command,
            got: line,
            want,
        });
    }
    Ok(line)
}

/// The data port from a `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` reply. The address is
/// ignored (as Python's ftplib does): the data connection goes to the control's host.
pub fn pasv_port(line: &str) -> Option<u16> {
    let inner = line.split('(').nth(1)?.split(')').next()?;
    let n: Vec<u16> = inner
        .split(',')
        .map(|p| p.trim().parse().ok())
        .collect::<Option<_>>()?;
    match n[..] {
        [_, _, _, _, hi, lo] if hi < 256 && lo < 256 => Some(hi * 256 + lo),
        _ => None,
    }
}

/// Uploads `local` as `remote` (e.g. `/cache/job.gcode.3mf`); returns the bytes stored.
pub async fn upload(
    config: Arc<rustls::ClientConfig>,
    host: &str,
    port: u16,
    access_code: &str,
    local: &Path,
    remote: &str,
) -> Result<u64, FtpsError> {
    let connector = TlsConnector::from(config);
    let mut c = BufReader::new(tls(&connector, host, tcp(host, port).await?).await?);
    let (code, line) = reply(&mut c).await?;
    if code != 220 {
        return Err(FtpsError::Unexpected {
            command: "(greeting)",
            got: line,
            want: 2,
        });
    }
    send(&mut c, "USER", "bblp", 3).await?;
    match send(&mut c, "PASS", access_code, 2).await {
        Err(FtpsError::Unexpected { got, .. }) => return Err(FtpsError::Login(got)),
        other => other?,
    };
    send(&mut c, "PBSZ", "0", 2).await?;
    send(&mut c, "PROT", "P", 2).await?;
    send(&mut c, "TYPE", "I", 2).await?;
    let pasv = send(&mut c, "PASV", "", 2).await?;
    let data_port = pasv_port(&pasv).ok_or(FtpsError::Unexpected {
        command: "PASV",
        got: pasv.clone(),
        want: 2,
    })?;
    // As ftplib: connect, send STOR, and only after its 1xx start TLS on the data connection
    // (the server accepts the data handshake once it knows the transfer).
    let data = tcp(host, data_port).await?;
    send(&mut c, "STOR", remote, 1).await?;
    let mut data = tls(&connector, host, data).await?;
    let mut file = tokio::fs::File::open(local).await?;
    let sent = tokio::io::copy(&mut file, &mut data).await?;
    // close_notify, then close: the server counts the file complete at end of stream.
    let _ = data.shutdown().await;
    // Read what the server sent (a TLS 1.3 session ticket) until it closes: closing with it
    // unread makes the kernel send a reset, and the server loses the file's tail (seen: a
    // 2.3 MB upload stored as 1.2 MB).
    let mut sink = [0u8; 4096];
    let drain = async { while matches!(data.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    drop(data);
    let (code, line) = reply(&mut c).await?;
    if code / 100 != 2 && code != 426 {
        return Err(FtpsError::Unexpected {
            command: "STOR",
            got: line,
            want: 2,
        });
    }
    let size = send(&mut c, "SIZE", remote, 2).await?;
    let stored = size
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    let _ = send(&mut c, "QUIT", "", 2).await;
    if stored != sent {
        return Err(FtpsError::Short { stored, sent });
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_passive_port_comes_from_the_last_two_numbers() {
        assert_eq!(
            super::pasv_port("227 Entering Passive Mode (192,168,1,20,195,80)."),
            Some(195 * 256 + 80)
        );
        assert_eq!(super::pasv_port("227 nonsense"), None);
        assert_eq!(super::pasv_port("227 (1,2,3,4,300,1)"), None);
    }
}
