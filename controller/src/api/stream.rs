//! `/api/v1/stream`: Server-Sent Events. First a `snapshot` of everything, then `printer`
//! (changed fields only) and `job` (whole job) events in commit order. A client too slow to
//! keep up gets a fresh snapshot instead of a silent gap.

use super::problem::{Caller, Problem};
use super::{AppState, require};
use crate::auth::Role;
use crate::farm::{Change, Farm, Snapshot};
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::broadcast::{Receiver, error::RecvError};

/// Counts a live client for `/metrics` while the stream exists.
struct Client(Arc<Farm>);

impl Drop for Client {
    fn drop(&mut self) {
        self.0.sse_clients.fetch_sub(1, Relaxed);
    }
}

fn snapshot(s: &Snapshot) -> Event {
    Event::default()
        .event("snapshot")
        .data(serde_json::to_string(s).unwrap_or_default())
}

fn change(c: Change) -> Event {
    let name = match c {
        Change::Printer(_) => "printer",
        Change::Job(_) => "job",
    };
    Event::default().event(name).data(render(&c))
}

/// The `data` of one change's event, as every stream client gets it.
pub fn render(c: &Change) -> String {
    match c {
        Change::Printer(json) => json.to_string(),
        Change::Job(j) => serde_json::to_string(j).unwrap_or_default(),
    }
}

/// Server-Sent Events: `snapshot` (`{printers, jobs}`) first, then `printer` (changed
/// fields) and `job` (whole job) events in commit order; a lagging client gets a new snapshot.
#[utoipa::path(get, path = "/stream", tag = "stream",
    responses((status = 200, description = "An endless event stream", body = String, content_type = "text/event-stream"), (status = "4XX", description = "Refused: the problem says why and what to do", body = super::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn stream(
    State(st): State<AppState>,
    c: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    require(&c, Role::Viewer)?;
    let farm = st.farm.clone();
    farm.sse_clients.fetch_add(1, Relaxed);
    let (snap, rx) = farm.subscribe();
    let state: (Client, Receiver<Change>, Option<Snapshot>) = (Client(farm), rx, Some(snap));
    let events = futures_util::stream::unfold(state, |(client, mut rx, first)| async move {
        if let Some(s) = first {
            return Some((Ok(snapshot(&s)), (client, rx, None)));
        }
        match rx.recv().await {
            Ok(c) => Some((Ok(change(c)), (client, rx, None))),
            Err(RecvError::Lagged(n)) => {
                tracing::debug!("stream client lagged by {n} changes; sending a fresh snapshot");
                let (s, rx) = client.0.subscribe();
                Some((Ok(snapshot(&s)), (client, rx, None)))
            }
            Err(RecvError::Closed) => None,
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
