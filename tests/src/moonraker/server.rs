//! The replay's network side: one loopback listener that speaks just enough HTTP/1.1 for
//! Moonraker's REST calls and the websocket upgrade, and hands every request to the player.

use anyhow::{Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::HashMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

/// One request from the agent to the replay.
pub(super) struct Request {
    pub(super) key: Key,
    /// The agent's JSON-RPC id (websocket requests).
    pub(super) id: Option<u64>,
    /// HTTP: the body; websocket: the params.
    pub(super) body: Vec<u8>,
    /// HTTP answers go back on this; websocket answers on the connection's writer.
    pub(super) http: Option<oneshot::Sender<HttpAnswer>>,
    /// The connection's writer (websocket opens).
    pub(super) ws: Option<mpsc::UnboundedSender<Message>>,
}

pub(super) struct HttpAnswer {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

/// What a request is matched on: `ws-open`, a JSON-RPC method, or `HTTP-METHOD /path`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    WsOpen,
    Ws(String),
    Http(String),
}

/// Serves one connection: an HTTP request, or a websocket upgrade followed by frames.
pub(super) async fn serve(
    mut tcp: TcpStream,
    to_player: mpsc::UnboundedSender<Request>,
) -> Result<()> {
    let mut head = vec![];
    let mut byte = [0u8; 1];
    // The head is small; reading it byte by byte leaves the body (or the frames) unread.
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            bail!("request head over 64 KiB");
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let mut parts = first.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let path = target.split('?').next().unwrap_or("").to_string();
    if headers
        .get("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
    {
        let key = headers
            .get("sec-websocket-key")
            .ok_or_else(|| anyhow!("no Sec-WebSocket-Key"))?;
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        tcp.write_all(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
        let ws = WebSocketStream::from_raw_socket(tcp, Role::Server, None).await;
        let (mut sink, mut stream) = ws.split();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let _ = to_player.send(Request {
            key: Key::WsOpen,
            id: None,
            body: vec![],
            http: None,
            ws: Some(out_tx),
        });
        loop {
            tokio::select! {
                m = out_rx.recv() => match m {
                    Some(m) => if sink.send(m).await.is_err() { break },
                    None => break,
                },
                f = stream.next() => match f {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                        let _ = to_player.send(Request {
                            key: Key::Ws(v["method"].as_str().unwrap_or("").to_string()),
                            id: v["id"].as_u64(),
                            body: v.get("params").map(|p| p.to_string().into_bytes()).unwrap_or_default(),
                            http: None,
                            ws: None,
                        });
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        return Ok(());
    }
    // Plain HTTP: read the body (Content-Length or chunked), answer once, close.
    let mut body = vec![];
    if let Some(n) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        body.resize(n, 0);
        tcp.read_exact(&mut body).await?;
    } else if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        body = read_chunked(&mut tcp).await?;
    }
    let (tx, rx) = oneshot::channel();
    let _ = to_player.send(Request {
        key: Key::Http(format!("{method} {path}")),
        id: None,
        body,
        http: Some(tx),
        ws: None,
    });
    let answer = rx.await.unwrap_or(HttpAnswer {
        status: 500,
        headers: vec![],
        body: b"{\"error\":{\"code\":500,\"message\":\"replay stopped\"}}".to_vec(),
    });
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        answer.status,
        if answer.status < 300 { "OK" } else { "Error" },
        answer.body.len()
    );
    for (k, v) in &answer.headers {
        out += &format!("{k}: {v}\r\n");
    }
    out += "\r\n";
    tcp.write_all(out.as_bytes()).await?;
    tcp.write_all(&answer.body).await?;
    tcp.shutdown().await.ok();
    Ok(())
}

async fn read_chunked(tcp: &mut TcpStream) -> Result<Vec<u8>> {
    let mut body = vec![];
    loop {
        let mut line = vec![];
        let mut b = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            if tcp.read(&mut b).await? == 0 {
                bail!("chunked body ended early");
            }
            line.push(b[0]);
        }
        let size = usize::from_str_radix(String::from_utf8_lossy(&line).trim(), 16)?;
        let mut chunk = vec![0u8; size + 2];
        tcp.read_exact(&mut chunk).await?;
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

/// The file part of a multipart body: (file name, bytes).
pub fn multipart_file(body: &[u8]) -> Option<(String, Vec<u8>)> {
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let at = find(body, b"filename=\"", 0)? + 10;
    let end = find(body, b"\"", at)?;
    let name = String::from_utf8_lossy(&body[at..end]).to_string();
    let start = find(body, b"\r\n\r\n", end)? + 4;
    // The boundary is the first line of the body.
    let boundary_end = find(body, b"\r\n", 0)?;
    let mut closing = b"\r\n".to_vec();
    closing.extend_from_slice(&body[..boundary_end]);
    let stop = find(body, &closing, start)?;
    Some((name, body[start..stop].to_vec()))
}

/// Keeps a `watch` of the player's position for tests that act in step with the transcript.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Position {
    /// The cue the player waits at (`None` while it plays recorded frames or after the end).
    pub waiting_at: Option<Key>,
    pub done: bool,
}
