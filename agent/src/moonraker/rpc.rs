//! JSON-RPC 2.0 over Moonraker's websocket (`ws://host:port/websocket`).
//!
//! [`connect`] opens the socket and spawns one task that owns it: it writes requests, hands
//! each response to the caller waiting on that id, and forwards notifications (no `id`, method
//! `notify_*`, positional `params`) in arrival order on an unbounded channel. Unbounded because
//! the back end may be awaiting a response while notifications arrive, and Moonraker's rate is
//! bounded by Klippy's 250 ms status poll plus a 1 Hz process-stat push: a few per second.
//!
//! When the socket closes or fails, every waiting call ends with [`RpcError::Closed`] and the
//! notification channel closes: that is how the back end learns the connection is gone.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Largest frame accepted from Moonraker. Its biggest answers (object lists, a page of
/// history with metadata) are tens of KiB; this bounds a misbehaving peer.
const MAX_FRAME: usize = 8 * 1024 * 1024;

/// How long a call may wait for its answer unless the caller says otherwise.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// JSON-RPC error codes Moonraker uses (HTTP codes remapped, see the module docs of `mod.rs`).
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const UNAUTHORIZED: i64 = -32602;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error(
        "cannot open Moonraker's websocket at {url}: {reason}; check [printer.moonraker] url and that Moonraker is running"
    )]
    Connect { url: String, reason: String },
    #[error("Moonraker answered {method} with error {code}: {message}")]
    Rejected {
        method: String,
        code: i64,
        message: String,
    },
    #[error("Moonraker did not answer {method} within {secs} s")]
    Timeout { method: String, secs: u64 },
    #[error("the connection to Moonraker closed")]
    Closed,
}

impl RpcError {
    /// Moonraker refused the caller's credentials (`-32602 Unauthorized` / `Invalid API Key`).
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, RpcError::Rejected { code, .. } if *code == UNAUTHORIZED)
    }

    /// The method does not exist: for `printer.*` this means Klippy is not connected.
    pub fn is_method_not_found(&self) -> bool {
        matches!(self, RpcError::Rejected { code, .. } if *code == METHOD_NOT_FOUND)
    }

    /// The error text Moonraker or Klippy gave, without our framing.
    pub fn peer_message(&self) -> String {
        match self {
            RpcError::Rejected { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

/// A notification from Moonraker.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub method: String,
    /// Always an array for Moonraker's notifications; `Null` when absent.
    pub params: Value,
}

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, RpcError>>>>>;

/// A handle to one open connection; cheap to clone (calls may run from spawned tasks).
#[derive(Clone)]
pub struct Rpc {
    out: mpsc::UnboundedSender<Message>,
    waiters: Waiters,
    next_id: Arc<AtomicU64>,
}

/// `http://host:port[/]` → `ws://host:port/websocket` (`https` → `wss`).
pub fn websocket_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let rest = base
        .strip_prefix("https://")
        .map(|r| format!("wss://{r}"))
        .or_else(|| base.strip_prefix("http://").map(|r| format!("ws://{r}")))
        .unwrap_or_else(|| base.to_string());
    format!("{rest}/websocket")
}

/// Opens the websocket and starts the task that owns it.
pub async fn connect(url: &str) -> Result<(Rpc, mpsc::UnboundedReceiver<Notification>), RpcError> {
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(MAX_FRAME);
    config.max_frame_size = Some(MAX_FRAME);
    let connect = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    let (ws, _) = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| RpcError::Connect {
            url: url.to_string(),
            reason: "no answer within 10 s".into(),
        })?
        .map_err(|e| RpcError::Connect {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
    let (note_tx, note_rx) = mpsc::unbounded_channel();
    let waiters: Waiters = Arc::default();
    let w = waiters.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                msg = out_rx.recv() => match msg {
                    Some(m) => if sink.send(m).await.is_err() { break },
                    // Every handle dropped: close politely.
                    None => { let _ = sink.send(Message::Close(None)).await; break }
                },
                frame = stream.next() => match frame {
                    Some(Ok(Message::Text(text))) => dispatch(text.as_str(), &w, &note_tx),
                    Some(Ok(Message::Ping(p))) => { let _ = sink.send(Message::Pong(p)).await; }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        // Wake every caller: the answers will never come.
        let pending: Vec<_> = match w.lock() {
            Ok(mut map) => map.drain().map(|(_, tx)| tx).collect(),
            Err(_) => vec![],
        };
        for tx in pending {
            let _ = tx.send(Err(RpcError::Closed));
        }
    });
    Ok((
        Rpc {
            out: out_tx,
            waiters,
            next_id: Arc::new(AtomicU64::new(1)),
        },
        note_rx,
    ))
}

/// One text frame from Moonraker: a response to a waiting call, or a notification.
fn dispatch(text: &str, waiters: &Waiters, notes: &mpsc::UnboundedSender<Notification>) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        tracing::debug!(frame = %text.chars().take(200).collect::<String>(), "ignoring a frame that is not JSON");
        return;
    };
    if let Some(method) = v.get("method").and_then(Value::as_str) {
        let _ = notes.send(Notification {
            method: method.to_string(),
            params: v.get("params").cloned().unwrap_or(Value::Null),
        });
        return;
    }
    let Some(id) = v.get("id").and_then(Value::as_u64) else {
        return;
    };
    let waiter = waiters.lock().ok().and_then(|mut m| m.remove(&id));
    if let Some(tx) = waiter {
        let answer = match v.get("error") {
            Some(e) => Err(RpcError::Rejected {
                method: String::new(),
                code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: e
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("(no message)")
                    .to_string(),
            }),
            None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
        };
        let _ = tx.send(answer);
    }
}

impl Rpc {
    /// Calls `method` and waits up to [`CALL_TIMEOUT`] for its result.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        self.call_within(method, params, CALL_TIMEOUT).await
    }

    /// Calls `method` (`params` `Null` = none) and waits up to `limit`.
    pub async fn call_within(
        &self,
        method: &str,
        params: Value,
        limit: Duration,
    ) -> Result<Value, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut req = json!({"jsonrpc": "2.0", "method": method, "id": id});
        if !params.is_null() {
            req["params"] = params;
        }
        let (tx, rx) = oneshot::channel();
        if let Ok(mut m) = self.waiters.lock() {
            m.insert(id, tx);
        }
        if self.out.send(Message::text(req.to_string())).is_err() {
            self.forget(id);
            return Err(RpcError::Closed);
        }
        let answer = match tokio::time::timeout(limit, rx).await {
            Ok(Ok(a)) => a,
            Ok(Err(_)) => Err(RpcError::Closed),
            Err(_) => {
                self.forget(id);
                Err(RpcError::Timeout {
                    method: method.to_string(),
                    secs: limit.as_secs(),
                })
            }
        };
        answer.map_err(|e| match e {
            RpcError::Rejected { code, message, .. } => RpcError::Rejected {
                method: method.to_string(),
                code,
                message,
            },
            other => other,
        })
    }

    fn forget(&self, id: u64) {
        if let Ok(mut m) = self.waiters.lock() {
            m.remove(&id);
        }
    }
}
