//! The embedded MQTT broker (rumqttd 0.20), for farms that do not run their own, and its
//! supervision.
//!
//! Agents log in with username = printer id and password = their token; the controller logs
//! in with a random password minted at start. The client id must equal the username, so one
//! agent cannot take over another's session (MQTT disconnects the older holder of a client id).
//! Traps handled here (deps.md §2.4): every router field is set (the defaults forward nothing),
//! and the listen port is checked before the broker thread starts, because rumqttd reports a
//! failed bind only inside its own thread.
//!
//! **Supervised.** rumqttd cannot be restarted in-process: its server thread keeps the port
//! and a poisoned lock after a panic, and it has no shutdown. So any fault raises
//! [`crate::Fatal`] and `farm-controller serve` exits with status 1 (systemd restarts it; agents
//! keep their events and send them again). Raised by: the broker thread ending; a panic in
//! any rumqttd thread or task ([`raise_on_broker_panic`]); a probe message through the router
//! not coming back within `[broker] stall_timeout_s` ([`probe`]); the controller's own link
//! not subscribed for that long ([`watch_link`]).
//!
//! **Limits** (`[broker]`, [`crate::config::BrokerConfig`]), from rumqttd 0.20's source:
//! - `max_connections` counts the controller's link and probe too. At the limit the router
//!   refuses the connection, and the refused client's *next* attempt with the same client id
//!   panics its connection task (`server/broker.rs`: a last-will sender left behind by the
//!   failed attempt, unwrapped while holding a std Mutex), which poisons that Mutex: every
//!   later connection panics too. So the default is far above any one-machine farm.
//! - Messages live in a log per subscription filter, kept by size whether read or not. The
//!   controller's three wildcard filters get `controller_backlog_mib` each (a subscriber that
//!   falls further behind skips to the newest: "jumping to head"); every other filter (each
//!   agent's `commands` and `acks`) a small log, or 10,000 printers' logs would grow without
//!   bound to the default's size over days.
//! - The router hands a subscriber at most 200 messages at a time (its fixed channel
//!   capacity), so `max_outgoing_packet_count` is 200; more is read and then held back.
//! - rumqttd 0.20 does not set `TCP_NODELAY` on the sockets it accepts and offers no setting
//!   (it binds and accepts inside `Server::start`); see ARCHITECTURE.md for the proposed fix.
//!
//! **Where it stops scaling** (measured at 5,000 printers, BENCHMARKS.md "Broker choice"): the
//! one router thread (`router-0`) took 64 % of the controller's CPU samples. Its filter index
//! is quadratic: each new subscription filter (every agent brings two: `commands`, `acks`)
//! is matched against every topic already published (`DataLog::next_native_offset`), and each
//! topic's first publish against every filter (`DataLog::matches`); every connection's set-up
//! then waits for that router on the one server thread that carries all sockets. No router
//! setting changes either, so connects time out and the controller's log falls behind until
//! the router skips it ("jumping to head"). ARCHITECTURE.md records the decision.

use crate::Fatal;
use crate::config::BrokerConfig;
use crate::farm::Farm;
use farm_protocol::Channel;
use rumqttd::{
    Broker, Config, ConnectionSettings, Notification, RouterConfig, ServerSettings,
    local::{LinkRx, LinkTx},
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// The name of rumqttd's server thread (it takes the server's name); the router's is `router-0`.
const SERVER_THREAD: &str = "mqtt-server";
/// Our thread that runs (and joins) rumqttd's server threads.
const BROKER_THREAD: &str = "mqtt-broker";
/// Per-agent filters (`commands`, `acks`): two segments of this size each. Big enough for a
/// burst of commands to an agent that is reconnecting; small, because there are thousands.
const PRINTER_SEGMENT_BYTES: usize = 16 * 1024;
/// The controller's backlog is cut into this many segments (the oldest is dropped whole).
const CONTROLLER_SEGMENTS: usize = 8;
/// How often the probe goes through the router.
const PROBE_EVERY: Duration = Duration::from_secs(5);

/// Credentials of the controller's own connection to the embedded broker.
#[derive(Clone)]
pub struct Embedded {
    pub addr: SocketAddr,
    pub user: String,
    pub pass: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "cannot listen for MQTT on {addr}: {err} (is another broker running there? choose another port with --mqtt-listen)"
    )]
    Bind {
        addr: SocketAddr,
        err: std::io::Error,
    },
    #[error("could not start the broker thread: {0}")]
    Thread(std::io::Error),
    #[error("the embedded broker's router did not accept the controller's probe: {0}")]
    Probe(String),
}

/// The router settings for our limits: see the module doc.
fn router_config(limits: &BrokerConfig, topics: &farm_protocol::Topics) -> RouterConfig {
    let backlog = limits.controller_backlog_mib << 20;
    let controller = rumqttd::SegmentConfig {
        max_segment_size: (backlog / CONTROLLER_SEGMENTS).max(1024),
        max_segment_count: CONTROLLER_SEGMENTS,
    };
    // Exact filter strings: rumqttd applies every key that matches, in hash order.
    let custom = [Channel::Status, Channel::Events, Channel::Online]
        .map(|ch| (topics.all_printers(ch), controller.clone()));
    RouterConfig {
        max_connections: limits.max_connections,
        max_outgoing_packet_count: 200,
        max_segment_size: PRINTER_SEGMENT_BYTES,
        max_segment_count: 2,
        custom_segment: Some(HashMap::from(custom)),
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    }
}

pub fn start(
    listen: SocketAddr,
    farm: Arc<Farm>,
    limits: &BrokerConfig,
    fatal: Fatal,
) -> Result<Embedded, BrokerError> {
    // Probe the port so a clash is reported here, not lost inside rumqttd's thread.
    drop(
        std::net::TcpListener::bind(listen)
            .map_err(|err| BrokerError::Bind { addr: listen, err })?,
    );
    let user = format!("farm-controller-{}", crate::auth::random_hex(4));
    let pass = crate::auth::random_hex(24);
    let mut server = ServerSettings {
        name: SERVER_THREAD.into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            // A client that connects and says nothing is dropped after this; others are not held up.
            connection_timeout_ms: 5_000,
            max_payload_size: farm_protocol::MAX_PAYLOAD_BYTES + 4096,
            max_inflight_count: 200,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let (u, p) = (user.clone(), pass.clone());
    let login_farm = farm.clone();
    server.set_auth_handler(
        move |client_id: String, username: String, password: String| {
            let ok = if username == u {
                password == p
            } else {
                client_id == username && login_farm.broker_login(&username, &password)
            };
            if !ok {
                tracing::warn!(
                    client_id,
                    username,
                    "broker refused a login (wrong token, or client id ≠ username)"
                );
            }
            async move { ok }
        },
    );
    let config = Config {
        id: 0,
        router: router_config(limits, farm.topics()),
        v4: Some(HashMap::from([(SERVER_THREAD.to_string(), server)])),
        ..Default::default()
    };
    raise_on_broker_panic(fatal.clone());
    let mut broker = Broker::new(config);
    let probe_link = broker
        .link(&format!(
            "farm-controller-probe-{}",
            crate::auth::random_hex(4)
        ))
        .map_err(|e| BrokerError::Probe(e.to_string()))?;
    let stopped = fatal.clone();
    std::thread::Builder::new()
        .name(BROKER_THREAD.into())
        .spawn(move || {
            // Returns only once every server thread has ended (an error, a panic, a failed bind).
            let why = match broker.start() {
                Ok(()) => "the embedded MQTT broker's server stopped".to_string(),
                Err(e) => format!("the embedded MQTT broker stopped: {e}"),
            };
            stopped.raise(why);
        })
        .map_err(BrokerError::Thread)?;
    let stall = Duration::from_secs(limits.stall_timeout_s);
    let topic = format!("farm-controller/probe/{}", crate::auth::random_hex(4));
    std::thread::Builder::new()
        .name("mqtt-probe".into())
        .spawn(move || {
            let (tx, rx) = probe_link;
            fatal.raise(probe(tx, rx, &topic, stall));
        })
        .map_err(BrokerError::Thread)?;
    // rumqttd binds inside its thread; wait (briefly) until it accepts, so the first
    // connection attempt of the controller's own link succeeds.
    let probe = if listen.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    };
    let t0 = Instant::now();
    while std::net::TcpStream::connect_timeout(&probe, Duration::from_millis(100)).is_err() {
        if t0.elapsed() > Duration::from_secs(5) {
            tracing::warn!(%listen, "the embedded broker is not accepting connections yet; continuing");
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    tracing::info!(
        %listen,
        max_connections = limits.max_connections,
        "embedded MQTT broker listening"
    );
    Ok(Embedded {
        addr: listen,
        user,
        pass,
    })
}

/// Sends a message through the router every [`PROBE_EVERY`] and waits for it to come back;
/// returns why it stopped: the router is gone (its thread ended: the link's channel closes at
/// once) or has not passed a probe for `stall`. Runs on its own thread (rumqttd's local link
/// blocks).
fn probe(mut tx: LinkTx, mut rx: LinkRx, topic: &str, stall: Duration) -> String {
    if let Err(e) = tx.subscribe(topic) {
        return format!("the embedded MQTT broker's router is gone: {e}");
    }
    let mut passed = Instant::now();
    let mut n = 0u64;
    loop {
        n = n.wrapping_add(1);
        let sent = Instant::now();
        let token = n.to_be_bytes();
        // try_: a wedged router with a full channel must not block the probe itself.
        let _ = tx.try_publish(topic.to_string(), token.to_vec());
        let deadline = sent + PROBE_EVERY;
        loop {
            match rx.recv_deadline(deadline) {
                Ok(Some(Notification::Forward(f))) if f.publish.payload[..] == token[..] => {
                    passed = Instant::now();
                }
                Ok(Some(Notification::Unschedule)) => {
                    let _ = rx.ready();
                }
                Ok(_) => {}
                Err(_) if Instant::now() >= deadline => break,
                Err(e) => return format!("the embedded MQTT broker's router is gone: {e}"),
            }
        }
        if passed.elapsed() > stall {
            return format!(
                "the embedded MQTT broker's router has passed no message for {} s",
                passed.elapsed().as_secs()
            );
        }
    }
}

/// Raises `fatal` when the controller's own link has not been connected and subscribed for
/// `stall` (the broker accepts TCP but no longer serves MQTT). Embedded broker only: an
/// external broker's outage is waited out.
pub async fn watch_link(
    farm: Arc<Farm>,
    stall: Duration,
    fatal: Fatal,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut up_at = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        if farm.broker_connected.load(Relaxed) {
            up_at = Instant::now();
        } else if up_at.elapsed() > stall {
            fatal.raise(format!(
                "the controller's link to the embedded MQTT broker has not been subscribed for {} s",
                up_at.elapsed().as_secs()
            ));
            return;
        }
    }
}

/// Is a panic on this thread, at this source file, the embedded broker's? rumqttd's threads
/// are the router (`router-N`), the server (named after it) and ours; its connection tasks
/// run on the server thread; a panic inside rumqttd's code names its file.
pub fn is_broker_panic(thread: &str, file: &str) -> bool {
    thread.starts_with("router-")
        || thread == SERVER_THREAD
        || thread == BROKER_THREAD
        || file.contains("/rumqttd-")
}

/// Chains a panic hook that raises `fatal` for a panic in the broker (after the usual
/// message). Any rumqttd panic leaves it broken: a dead router, or a poisoned lock that fails
/// every later connection.
fn raise_on_broker_panic(fatal: Fatal) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        let thread = std::thread::current()
            .name()
            .unwrap_or_default()
            .to_string();
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if is_broker_panic(&thread, &at) {
            let what = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            fatal.raise(format!(
                "the embedded MQTT broker panicked (thread {thread}, {at}): {what}"
            ));
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_subscriptions_get_the_backlog_and_agents_a_small_log() {
        let topics = farm_protocol::Topics::new("farm").expect("root");
        let limits = BrokerConfig {
            controller_backlog_mib: 64,
            ..BrokerConfig::default()
        };
        let r = router_config(&limits, &topics);
        assert_eq!(r.max_connections, limits.max_connections);
        let custom = r.custom_segment.expect("custom segments");
        assert_eq!(custom.len(), 3);
        for ch in [Channel::Status, Channel::Events, Channel::Online] {
            let s = &custom[&topics.all_printers(ch)];
            assert_eq!(s.max_segment_size * s.max_segment_count, 64 << 20);
        }
        // An agent's own filter matches none of them, so it gets the small default log.
        let agent = topics.printer(&"p-1".parse().expect("id"), Channel::Commands);
        assert!(
            custom
                .keys()
                .all(|k| !rumqttd::protocol::matches(&agent, k))
        );
        assert!(r.max_segment_size * r.max_segment_count <= 64 * 1024);
    }

    #[test]
    fn broker_panics_are_told_from_others() {
        let rumqttd =
            "/root/.cargo/registry/src/index.crates.io-x/rumqttd-0.20.0/src/router/scheduler.rs:63";
        assert!(is_broker_panic("router-0", "slab-0.4/src/lib.rs:1"));
        assert!(is_broker_panic(SERVER_THREAD, "std/src/sync/poison.rs:1"));
        assert!(is_broker_panic("tokio-runtime-worker", rumqttd));
        assert!(!is_broker_panic(
            "tokio-runtime-worker",
            "controller/src/farm/agents.rs:12"
        ));
        assert!(!is_broker_panic("main", "controller/src/broker.rs:1"));
    }
}
