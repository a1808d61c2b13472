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
