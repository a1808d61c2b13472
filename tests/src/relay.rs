//! A TCP relay in front of a real server that can cut one kind of connection: how a test makes
//! OctoPrint's push channel drop while its REST API stays up, a network fault (a proxy or Wi-Fi
//! dropping a long-lived socket) that a local OctoPrint never produces by itself. Bytes pass
//! through unchanged; the relay only counts requests and closes sockets.

use anyhow::Result;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Relay {
    /// `http://127.0.0.1:<port>`: give this to the client instead of the server's URL.
    pub url: String,
    cut: watch::Sender<bool>,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Counts {
    /// Requests whose path starts with the counted prefix.
    counted: AtomicUsize,
    /// Connections to the cut prefix refused after `cut()`.
    refused: AtomicUsize,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// Relays to `127.0.0.1:<port>`. Connections whose first request path starts with `cut`
    /// are the ones `cut()` closes; requests starting with `count` are counted.
    pub async fn start(port: u16, cut: &'static str, count: &'static str) -> Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = watch::channel(false);
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (rx, c) = (rx.clone(), c.clone());
                tokio::spawn(async move {
                    let _ = relay(client, port, cut, count, rx, c).await;
                });
            }
        });
        Ok(Relay {
            url,
            cut: tx,
            counts,
            task,
        })
    }

    /// Closes the open connections to the cut prefix and refuses new ones from now on.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Requests seen so far to the counted prefix.
    pub fn counted(&self) -> usize {
        self.counts.counted.load(Ordering::SeqCst)
    }

    /// Connections to the cut prefix refused since `cut()`.
    pub fn refused(&self) -> usize {
        self.counts.refused.load(Ordering::SeqCst)
    }
}

/// Finds request lines (`GET /path …`) in a chunk; one chunk per request is how HTTP clients
/// write small requests, so splits across chunks are not looked for.
fn count_requests(chunk: &[u8], prefix: &str, counts: &Counts) {
    let text = String::from_utf8_lossy(chunk);
    let n = text
        .split("\r\n")
        .filter(|l| l.split(' ').nth(1).is_some_and(|p| p.starts_with(prefix)))
        .count();
    counts.counted.fetch_add(n, Ordering::SeqCst);
}

async fn relay(
    mut client: TcpStream,
    port: u16,
    cut: &str,
    count: &str,
    mut is_cut: watch::Receiver<bool>,
    counts: Arc<Counts>,
) -> Result<()> {
    let mut first = vec![0u8; 16 * 1024];
    let n = client.read(&mut first).await?;
    first.truncate(n);
    let head = String::from_utf8_lossy(&first);
    let path = head.split(' ').nth(1).unwrap_or_default();
    let cuttable = path.starts_with(cut);
    if cuttable && *is_cut.borrow() {
        counts.refused.fetch_add(1, Ordering::SeqCst);
        return Ok(());
    }
    count_requests(&first, count, &counts);
    let mut server = TcpStream::connect(("127.0.0.1", port)).await?;
    server.write_all(&first).await?;
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                return anyhow::Ok(());
            }
            count_requests(&buf[..n], count, &counts);
            sw.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        tokio::io::copy(&mut sr, &mut cw).await?;
        anyhow::Ok(())
    };
    let pipe = async { tokio::try_join!(up, down).map(|_| ()) };
    if cuttable {
        tokio::select! {
            r = pipe => r,
            _ = is_cut.wait_for(|c| *c) => Ok(()),
        }
    } else {
        pipe.await
    }
}

/// A TCP link with a fixed one-way delay in front of a real server: a broker across a VPN or a
/// Pi on poor Wi-Fi, which loopback never is. Every chunk is forwarded, in order, `delay`
/// after it arrived; bandwidth is not limited.
pub struct SlowLink {
    /// `host:port` to give the client instead of the server's address.
    pub addr: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SlowLink {
    /// Relays to `127.0.0.1:<port>`, each direction `delay` late.
    pub async fn start(port: u16, delay: std::time::Duration) -> Result<SlowLink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", port)).await {
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        let _ = tokio::try_join!(late(cr, sw, delay), late(sr, cw, delay));
                    }
                });
            }
        });
        Ok(SlowLink { addr, task })
    }
}

/// Copies `from` to `to`, writing each chunk `delay` after it was read.
async fn late(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: std::time::Duration,
) -> Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            to.write_all(&chunk).await?;
        }
        to.shutdown().await?;
        anyhow::Ok(())
    };
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return anyhow::Ok(());
            }
            // The writer ends only on a write error, which ends this copy anyway.
            if tx
                .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
            {
                return Ok(());
            }
        }
    };
    tokio::try_join!(reader, writer).map(|_| ())
}
