//! `/api/v1/stream`: Server-Sent Events. First a `snapshot` of everything, then `printer`
//! (changed fields only) and `job` (whole job) events in commit order.
//!
//! Every subscriber reads the same bounded ring ([`crate::farm::STREAM_BACKLOG`] changes):
//! a change is encoded once, by the first subscriber that sends it, and the others send the
//! same bytes ([`SharedChange::encoded`]). A subscriber that falls further behind than the
//! ring (a slow dashboard) holds up no one and costs no memory of its own: it gets a fresh
//! snapshot instead of the changes it missed, never a silent gap.

use super::problem::{Caller, Problem};
use super::{AppState, require};
use crate::auth::Role;
use crate::farm::{Change, Farm, SharedChange, Snapshot};
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::broadcast::{Receiver, error::RecvError};
use tokio::time::{Instant, Sleep};

/// A comment line this often when nothing else was sent, so proxies and clients see the
/// connection alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Counts a live client for `/metrics` while the stream exists.
struct Client(Arc<Farm>);

impl Drop for Client {
    fn drop(&mut self) {
        self.0.sse_clients.fetch_sub(1, Relaxed);
    }
}

/// One SSE event: `event: <name>`, the JSON `data` on one line (compact JSON has no raw
/// newline), a blank line.
fn frame(name: &str, data: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut b = Vec::with_capacity(512);
    b.extend_from_slice(b"event: ");
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(b"\ndata: ");
    data(&mut b);
    b.extend_from_slice(b"\n\n");
    Bytes::from(b)
}

fn snapshot(s: &Snapshot) -> Bytes {
    frame("snapshot", |b| {
        let _ = serde_json::to_writer(b, s);
    })
}

/// One change as its SSE event, encoded once and shared by every subscriber.
pub fn encode(c: &Change) -> Bytes {
    match c {
        // Already JSON text: the diff renders it once ([`crate::printers::fleet::diff`]).
        Change::Printer(json) => frame("printer", |b| b.extend_from_slice(json.as_bytes())),
        Change::Job(j) => frame("job", |b| {
            let _ = serde_json::to_writer(b, j);
        }),
    }
}

struct Subscriber {
    client: Client,
    rx: Receiver<Arc<SharedChange>>,
    first: Option<Snapshot>,
    keep_alive: Pin<Box<Sleep>>,
    /// Something was sent since the keep-alive timer last fired.
    sent: bool,
}

/// The bytes of one subscriber's stream: its snapshot, then each change (shared encoding),
/// a fresh snapshot after falling behind, a comment when quiet for [`KEEP_ALIVE`].
pub(crate) fn events(farm: Arc<Farm>) -> impl Stream<Item = Bytes> {
    farm.sse_clients.fetch_add(1, Relaxed);
    let (snap, rx) = farm.subscribe();
    let sub = Subscriber {
        client: Client(farm),
        rx,
        first: Some(snap),
        // One timer per subscriber, reset every 15 s, not on every change.
        keep_alive: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
        sent: true,
    };
    futures_util::stream::unfold(sub, |mut s| async move {
        if let Some(snap) = s.first.take() {
            return Some((snapshot(&snap), s));
        }
        loop {
            let next = tokio::select! {
                r = s.rx.recv() => r,
                () = s.keep_alive.as_mut() => {
                    s.keep_alive.as_mut().reset(Instant::now() + KEEP_ALIVE);
                    if std::mem::replace(&mut s.sent, false) {
                        continue;
                    }
                    return Some((Bytes::from_static(b":\n\n"), s));
                }
            };
            s.sent = true;
            return match next {
                Ok(c) => Some((c.encoded(encode), s)),
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(
                        "stream client lagged by {n} changes; sending a fresh snapshot"
                    );
                    let (snap, rx) = s.client.0.subscribe();
                    s.rx = rx;
                    Some((snapshot(&snap), s))
                }
                Err(RecvError::Closed) => None,
            };
        }
    })
}

/// Server-Sent Events: `snapshot` (`{printers, jobs}`) first, then `printer` (changed
/// fields) and `job` (whole job) events in commit order; a lagging client gets a new snapshot.
#[utoipa::path(get, path = "/stream", tag = "stream",
    responses((status = 200, description = "An endless event stream", body = String, content_type = "text/event-stream"), (status = "4XX", description = "Refused: the problem says why and what to do", body = super::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn stream(State(st): State<AppState>, c: Caller) -> Result<Response, Problem> {
    require(&c, Role::Viewer)?;
    let body = Body::from_stream(events(st.farm.clone()).map(Ok::<_, Infallible>));
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::farm::STREAM_BACKLOG;
    use futures_util::StreamExt;

    use crate::farm::open_for_tests as open;

    fn change(n: usize) -> Change {
        Change::Printer(serde_json::json!({"id": "p-1", "n": n}).to_string().into())
    }

    fn text(b: &Bytes) -> &str {
        std::str::from_utf8(b).expect("utf-8")
    }

    #[tokio::test]
    async fn a_change_is_encoded_once_for_every_subscriber() {
        let dir = tempfile::tempdir().expect("tempdir");
        let farm = open(dir.path());
        let mut a = Box::pin(events(farm.clone()));
        let mut b = Box::pin(events(farm.clone()));
        assert!(text(&a.next().await.expect("a")).starts_with("event: snapshot\n"));
        assert!(text(&b.next().await.expect("b")).starts_with("event: snapshot\n"));
        farm.publish(change(7));
        let (x, y) = (a.next().await.expect("a"), b.next().await.expect("b"));
        assert_eq!(
            text(&x),
            "event: printer\ndata: {\"id\":\"p-1\",\"n\":7}\n\n"
        );
        assert_eq!(
            x.as_ptr(),
            y.as_ptr(),
            "both subscribers send the same bytes"
        );
        assert_eq!(farm.sse_clients.load(Relaxed), 2);
        drop(a);
        assert_eq!(farm.sse_clients.load(Relaxed), 1);
    }

    /// A subscriber that stops reading holds up no one: the others get every change in
    /// order; it gets a fresh snapshot (with what it missed folded in), then changes again.
    #[tokio::test]
    async fn a_slow_subscriber_is_resynced_and_holds_up_no_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let farm = open(dir.path());
        let mut fast = Box::pin(events(farm.clone()));
        let mut slow = Box::pin(events(farm.clone()));
        assert!(text(&fast.next().await.expect("fast")).starts_with("event: snapshot\n"));
        assert!(text(&slow.next().await.expect("slow")).starts_with("event: snapshot\n"));
        let total = STREAM_BACKLOG * 2 + 100;
        let chunk = STREAM_BACKLOG / 4;
        let mut n = 0;
        while n < total {
            for _ in 0..chunk {
                farm.publish(change(n));
                n += 1;
            }
            for i in n - chunk..n {
                let got = fast.next().await.expect("fast");
                let want = format!("event: printer\ndata: {{\"id\":\"p-1\",\"n\":{i}}}\n\n");
                assert_eq!(text(&got), want, "the reading subscriber misses nothing");
            }
        }
        let got = slow.next().await.expect("slow");
        assert!(
            text(&got).starts_with("event: snapshot\ndata: {\"printers\":"),
            "a subscriber further behind than the ring gets a snapshot, not a gap: {}",
            &text(&got)[..60.min(got.len())]
        );
        farm.publish(change(n));
        let want = format!("event: printer\ndata: {{\"id\":\"p-1\",\"n\":{n}}}\n\n");
        assert_eq!(text(&slow.next().await.expect("slow")), want);
        assert_eq!(text(&fast.next().await.expect("fast")), want);
    }
}
