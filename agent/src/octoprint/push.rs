//! OctoPrint's push channel: the plain websocket at `/sockjs/websocket` (no SockJS framing).
//!
//! Opening it is the sequence verified against 1.11.8: `POST /api/login {"passive": true}`
//! with the API key gives a session; on the socket the server greets with `connected`; the
//! client subscribes (no serial log lines, all events), sends `{"auth": "user:session"}` and a
//! throttle, and then receives `history` once, `current` every 0.5 s × throttle, and `event`s.

use super::client::{Api, ApiError};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Biggest frame accepted; `history` is ~26 KB, `current` ~3 KB.
const MAX_FRAME: usize = 4 << 20;
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(
        "OctoPrint's push channel needs ws:// (http:// URL); {0} is not supported, status is polled instead"
    )]
    Scheme(String),
    #[error("cannot open OctoPrint's push channel at {url}: {detail}")]
    Open { url: String, detail: String },
}

/// What arrived on the push channel.
pub enum Incoming {
    Text(String),
    Pong,
}

/// An authenticated push channel.
pub struct Push {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Push {
    /// Logs in, connects, subscribes and authenticates. `throttle` multiplies OctoPrint's
    /// 0.5 s `current` interval.
    pub async fn open(api: &Api, throttle: u32) -> Result<Push, PushError> {
        let auth = api.session().await?;
        let base = api.base();
        let url = match base.strip_prefix("http://") {
            Some(rest) => format!("ws://{rest}/sockjs/websocket"),
            None => return Err(PushError::Scheme(base.to_string())),
        };
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(MAX_FRAME);
        config.max_frame_size = Some(MAX_FRAME);
        let open = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), false);
        let (mut ws, _) = tokio::time::timeout(OPEN_TIMEOUT, open)
            .await
            .map_err(|_| PushError::Open {
                url: url.clone(),
                detail: "timed out".into(),
            })?
            .map_err(|e| PushError::Open {
                url: url.clone(),
                detail: e.to_string(),
            })?;
        // Subscribing before auth is allowed; it keeps the serial log out of every frame.
        let hello = [
            json!({"subscribe": {"state": {"logs": false, "messages": false}, "events": true, "plugins": false}}),
            json!({ "auth": auth }),
            json!({ "throttle": throttle.max(1) }),
        ];
        for msg in hello {
            ws.send(Message::text(msg.to_string()))
                .await
                .map_err(|e| PushError::Open {
                    url: url.clone(),
                    detail: e.to_string(),
                })?;
        }
        Ok(Push { ws })
    }

    /// Asks OctoPrint for a pong. Needed to tell a live channel from a dead one: OctoPrint
    /// sends nothing at all while it is not connected to the printer.
    pub async fn ping(&mut self) -> bool {
        self.ws
            .send(Message::Ping(Default::default()))
            .await
            .is_ok()
    }

    /// The next text frame or pong; `None` when the channel closed or failed (the reason is
    /// logged).
    pub async fn next(&mut self) -> Option<Incoming> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => return Some(Incoming::Text(t.to_string())),
                Some(Ok(Message::Pong(_))) => return Some(Incoming::Pong),
                Some(Ok(Message::Close(frame))) => {
                    tracing::info!(?frame, "OctoPrint closed the push channel");
                    return None;
                }
                // Pings are answered by tungstenite; binary frames are not OctoPrint's.
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    tracing::info!(error = %e, "OctoPrint's push channel failed");
                    return None;
                }
                None => return None,
            }
        }
    }

    /// Says goodbye (best effort: the peer may be gone already).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ws.close(None)).await;
    }
}
