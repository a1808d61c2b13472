//! The embedded MQTT broker (rmqtt 0.24, on the controller's own tokio runtime), for farms
//! that do not run their own, and its supervision.
//!
//! **Logins and topics.** Agents log in with username = printer id and password = their
//! token; the controller's link and probe with a random login minted at start (the
//! superuser). The client id must equal the username, so one agent cannot take over another's
//! session (MQTT disconnects the older holder of a client id). A topic ACL
//! ([`crate::mqtt::acl`]) keeps each printer to its own channels; a refused publish is
//! acknowledged, dropped and counted (`farm_mqtt_dropped_total{reason="not_authorized"}`), a
//! refused subscription answered "not authorized".
//!
//! **Two listeners.** Printers connect to `mqtt_listen`; the controller's link to a second
//! listener on 127.0.0.1 (an ephemeral port), so that its session gets its own large queue
//! and window, and its reconnect never waits behind thousands of printers' logins.
//!
//! **Supervised.** If the broker's server task ends, fails or panics, or its probe (a
//! message through the printers' listener and back, [`probe`]) has not come back for
//! `[broker] stall_timeout_s`, or the controller's own link has not been subscribed for that
//! long ([`watch_link`]), this raises [`crate::Fatal`] and `farm-controller serve` exits with
//! status 1 (systemd restarts it; agents keep their events and send them again). A panic in
//! one connection's task is not fatal: tokio ends that task only, and rmqtt's shared state is
//! behind `parking_lot` locks, which are not poisoned by a panic (a printer's bad packet must
//! not take the farm down); the probe notices if the broker stopped serving anyway.
//!
//! **Limits** (`[broker]`, [`crate::config::BrokerConfig`]; rmqtt 0.24's defaults in brackets):
//! - `max_connections` (50,000) caps sessions (rmqtt's `mqtt_max_sessions` [unlimited]),
//!   counting printers whose session waits for their next connection; at the cap a *new*
//!   session is refused with "server unavailable", a known one always gets back in.
//! - `handshake_concurrency` (1,000 [1,000]): logins checked at once; the others queue first
//!   come, first served. Far more (the first rmqtt bench used 20,000) shares two cores among
//!   thousands of half-done logins, so all of them finish late and clients time out; far fewer
//!   leaves the CPU idle while logins wait on session takeovers.
//! - `handshake_timeout_s` (10 [30]): a connection must have sent CONNECT, and its login been
//!   checked, within this; later it is dropped unanswered. Agents (and the loadgen) give up
//!   on a CONNACK after ~10 s and retry, so older work would only answer no one.
//! - `controller_queue` (200,000 messages [1,000 per session]): the controller's session
//!   takes every printer's status, presence and events; a reconnect storm of 10,000 printers
//!   is ~30,000 messages at once, and 10,000 printers' statuses fill 1,000 in 0.1 s. Memory is
//!   only what is queued (~1 KB a message). Its in-flight window is 1,000 QoS 1 messages [16].
//! - `printer_queue` (100 [1,000]): a printer's commands and acks while it is slow or away.
//! - Printers' sessions (clean_session = false, as agents connect) outlive a dropped
//!   connection for 2 h (rmqtt's default), holding commands for the agent's return. Retained
//!   messages (each printer's last status and presence) are kept in memory
//!   ([`RetainedInMemory`]); rmqtt's own store keeps none without its plugin.
//! - `TCP_NODELAY` on every accepted socket; a 4,096-connection accept backlog [512] for a
//!   reconnect storm; rmqtt's "busy" check (refuse logins while the machine's load average is
//!   high) is off: a loaded farm machine must still take its printers.

use crate::Fatal;
use crate::config::BrokerConfig;
use crate::farm::Farm;
use crate::mqtt::acl::{self, Who};
use async_trait::async_trait;
use farm_protocol::Topics;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::ServerContext;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::retain::{DefaultRetainStorage, RetainStorage};
use rmqtt::server::MqttServer;
use rmqtt::types::{
    AuthResult, LastWill, ListenerId, PublishAclResult, Retain, SubscribeAclResult, TopicFilter,
    TopicName,
};
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// The printers' listener and the controller's, as rmqtt tells them apart.
const PRINTERS: ListenerId = 1;
const CONTROLLER: ListenerId = 2;
/// How often the probe goes through the broker.
const PROBE_EVERY: Duration = Duration::from_secs(5);

/// Where and how the controller's own link connects to the embedded broker.
#[derive(Clone)]
pub struct Embedded {
    /// The printers' listener (`mqtt_listen`, its port resolved).
    pub addr: SocketAddr,
    /// The controller's own listener (127.0.0.1, an ephemeral port).
    pub link: SocketAddr,
    pub user: String,
    pub pass: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "cannot listen for MQTT on {addr}: {err} (is another broker running there? choose another port with --mqtt-listen)"
    )]
    Bind { addr: SocketAddr, err: String },
    #[error("could not start the broker probe thread: {0}")]
    Thread(std::io::Error),
}

/// The login and topic rules, as rmqtt hooks.
struct Rules {
    farm: Arc<Farm>,
    topics: Topics,
    user: String,
    pass: String,
}

impl Rules {
    fn who<'a>(&self, username: &'a str) -> Who<'a> {
        if username == self.user {
            Who::Controller
        } else {
            Who::Printer(username)
        }
    }

    fn authenticate(&self, info: &rmqtt::types::ConnectInfo) -> AuthResult {
        let user = info.username().map(|u| u.as_ref()).unwrap_or_default();
        let pass = info.password().map(|p| &p[..]).unwrap_or_default();
        if user == self.user {
            return if pass == self.pass.as_bytes() {
                AuthResult::Allow(true, None)
            } else {
                AuthResult::BadUsernameOrPassword
            };
        }
        let will = info.last_will().map(|w| match w {
            LastWill::V3(w) => w.topic.to_string(),
            LastWill::V5(w) => w.topic.to_string(),
        });
        let client_id: &str = info.client_id();
        let shape = acl::decide_printer_login(&self.topics, client_id, user, will.as_deref());
        let token_ok = || std::str::from_utf8(pass).is_ok_and(|p| self.farm.broker_login(user, p));
        match shape {
            Ok(()) if token_ok() => AuthResult::Allow(false, None),
            Ok(()) => {
                tracing::warn!(client_id, user, "broker refused a login: wrong token");
                AuthResult::BadUsernameOrPassword
            }
            Err(why) => {
                tracing::warn!(client_id, user, ?why, "broker refused a login");
                AuthResult::NotAuthorized
            }
        }
    }
}

struct Hooks(Arc<Rules>);

#[async_trait]
impl Handler for Hooks {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let r = &self.0;
        match param {
            Parameter::ClientAuthenticate(info) => {
                (false, Some(HookResult::AuthResult(r.authenticate(info))))
            }
            Parameter::MessagePublishCheckAcl(s, p) => {
                let user = s.id.username_ref();
                let res = if acl::may_publish(&r.topics, r.who(user), &p.topic) {
                    PublishAclResult::allow()
                } else {
                    r.farm.metrics.mqtt_dropped.inc("not_authorized");
                    tracing::debug!(user, topic = %p.topic, "broker refused a publish");
                    PublishAclResult::rejected(false, None)
                };
                (false, Some(HookResult::PublishAclResult(res)))
            }
            Parameter::ClientSubscribeCheckAcl(s, sub) => {
                let user = s.id.username_ref();
                let res = if acl::may_subscribe(&r.topics, r.who(user), &sub.topic_filter) {
                    SubscribeAclResult::new_success(sub.opts.qos(), None)
                } else {
                    tracing::warn!(user, filter = %sub.topic_filter, "broker refused a subscription");
                    SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
                };
                (false, Some(HookResult::SubscribeAclResult(res)))
            }
            _ => (true, acc),
        }
    }
}

/// rmqtt's in-memory retained store, switched on (its trait's default says "disabled" and
/// leaves retained messages to a plugin). One message per topic: at most two per printer.
#[derive(Default)]
pub struct RetainedInMemory(DefaultRetainStorage);

#[async_trait]
impl RetainStorage for RetainedInMemory {
    fn enable(&self) -> bool {
        true
    }

    async fn set(
        &self,
        topic: &TopicName,
        retain: Retain,
        expiry: Option<Duration>,
    ) -> rmqtt::Result<()> {
        self.0.set_with_timeout(topic, retain, expiry).await
    }

    async fn get(&self, filter: &TopicFilter) -> rmqtt::Result<Vec<(TopicName, Retain)>> {
        self.0.get_message(filter).await
    }

    async fn count(&self) -> isize {
        self.0.count().await
    }

    async fn max(&self) -> isize {
        self.0.max().await
    }
}

/// One listener; `queue` and `window` are each session's message queue and QoS 1 in-flight
/// window.
fn listener(
    name: &str,
    addr: SocketAddr,
    limits: &BrokerConfig,
    queue: usize,
    window: u16,
) -> Result<rmqtt::net::Listener, BrokerError> {
    let bind = |err: rmqtt::net::Error| BrokerError::Bind {
        addr,
        err: format!("{err:#}"),
    };
    Builder::new()
        .name(name)
        .laddr(addr)
        .backlog(4096)
        .reuseaddr(Some(true))
        .nodelay(true)
        .allow_anonymous(false)
        .max_connections(limits.max_connections)
        .max_handshaking_limit(limits.handshake_concurrency)
        .handshake_timeout(Duration::from_secs(limits.handshake_timeout_s))
        .max_packet_size((farm_protocol::MAX_PAYLOAD_BYTES + 4096) as u32)
        .max_mqueue_len(queue)
        .max_inflight(NonZeroU16::new(window).unwrap_or(NonZeroU16::MIN))
        .bind()
        .and_then(|l| l.tcp())
        .map_err(bind)
}

/// Starts the broker on the current tokio runtime; returns once both listeners are bound.
pub async fn start(
    listen: SocketAddr,
    farm: Arc<Farm>,
    limits: &BrokerConfig,
    fatal: Fatal,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Embedded, BrokerError> {
    let user = format!("farm-controller-{}", crate::auth::random_hex(4));
    let pass = crate::auth::random_hex(24);
    let printers = listener("printers", listen, limits, limits.printer_queue, 16)?;
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    // The controller's session takes every printer's news: a large queue and window.
    let controller = listener("controller", local, limits, limits.controller_queue, 1000)?;
    let addr = printers.local_addr().map_err(|e| BrokerError::Bind {
        addr: listen,
        err: e.to_string(),
    })?;
    let link = controller.local_addr().map_err(|e| BrokerError::Bind {
        addr: local,
        err: e.to_string(),
    })?;

    let scx = ServerContext::new()
        .busy_check_enable(false)
        .mqtt_max_sessions(limits.max_connections as isize)
        .build()
        .await;
    *scx.extends.retain_mut().await = Box::new(RetainedInMemory::default());
    let rules = Arc::new(Rules {
        topics: farm.topics().clone(),
        farm,
        user: user.clone(),
        pass: pass.clone(),
    });
    let register = scx.extends.hook_mgr().register();
    for t in [
        Type::ClientAuthenticate,
        Type::MessagePublishCheckAcl,
        Type::ClientSubscribeCheckAcl,
    ] {
        register.add(t, Box::new(Hooks(rules.clone()))).await;
    }
    register.start().await;

    let server = MqttServer::new(scx)
        .listener_by_id(printers, PRINTERS)
        .listener_by_id(controller, CONTROLLER)
        .build();
    let serving = tokio::spawn(async move {
        tokio::select! {
            r = server.run() => r,
            _ = test_fault() => Err(anyhow::anyhow!("stopped by FARM_TEST_STOP_BROKER_AFTER_S (a test's fault)")),
        }
    });
    let stopped = fatal.clone();
    tokio::spawn(async move {
        // The accept loops never end on their own: any end is a dead broker.
        let why = match serving.await {
            Ok(Ok(())) => "the embedded MQTT broker's server stopped".to_string(),
            Ok(Err(e)) => format!("the embedded MQTT broker's server stopped: {e:#}"),
            Err(e) if e.is_panic() => format!("the embedded MQTT broker's server panicked: {e}"),
            Err(e) => format!("the embedded MQTT broker's server stopped: {e}"),
        };
        stopped.raise(why);
    });

    let stall = Duration::from_secs(limits.stall_timeout_s);
    let probe_to = if addr.ip().is_unspecified() {
        SocketAddr::new(
            if addr.is_ipv4() {
                [127, 0, 0, 1].into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            },
            addr.port(),
        )
    } else {
        addr
    };
    let (u, p) = (user.clone(), pass.clone());
    let (probe_in, probe_connected) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("mqtt-probe".into())
        .spawn(move || {
            // Its own small runtime: a broker (or runtime) so busy that nothing moves for
            // `stall` is found even if the controller's runtime cannot run this.
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fatal.raise(format!("the broker probe cannot run: {e}")),
            };
            if let Some(why) = rt.block_on(probe(probe_to, u, p, stall, probe_in, shutdown)) {
                fatal.raise(why);
            }
        })
        .map_err(BrokerError::Thread)?;
    // Ready means the probe holds its session too: `max_connections` counts it, so a printer
    // let in before it would take its place (and the probe would be refused).
    if tokio::time::timeout(Duration::from_secs(5), probe_connected)
        .await
        .is_err()
    {
        tracing::warn!("the broker probe has not connected within 5 s; starting without it");
    }
    tracing::info!(
        %addr,
        max_connections = limits.max_connections,
        "embedded MQTT broker listening"
    );
    Ok(Embedded {
        addr,
        link,
        user,
        pass,
    })
}

/// Tests only, debug builds only: the broker's server ends after `FARM_TEST_STOP_BROKER_AFTER_S`
/// seconds, as if it had died. A mock of a fault the real broker cannot be made to produce
/// from outside (its accept loops never end); release builds never end here.
async fn test_fault() {
    #[cfg(debug_assertions)]
    if let Some(s) = std::env::var("FARM_TEST_STOP_BROKER_AFTER_S")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        tokio::time::sleep(Duration::from_secs(s)).await;
        return;
    }
    std::future::pending::<()>().await
}

/// Keeps a connection to the printers' listener as the superuser and sends a message to
/// itself every [`PROBE_EVERY`]; returns why the broker is dead once none has come back for
/// `stall` (None at shutdown). Any message back counts: a slow broker is not a dead one.
async fn probe(
    to: SocketAddr,
    user: String,
    pass: String,
    stall: Duration,
    connected: tokio::sync::oneshot::Sender<()>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Option<String> {
    let mut connected = Some(connected);
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let id = format!("farm-controller-probe-{}", crate::auth::random_hex(4));
    let topic = format!("farm-controller/probe/{}", crate::auth::random_hex(4));
    let mut opts = MqttOptions::new(id, to.ip().to_string(), to.port());
    opts.set_credentials(user, pass);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(opts, 16);
    let mut tick = tokio::time::interval(PROBE_EVERY);
    let mut passed = Instant::now();
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return None,
            _ = tick.tick() => {
                if passed.elapsed() > stall {
                    return Some(format!(
                        "the embedded MQTT broker has passed no message for {} s",
                        passed.elapsed().as_secs()
                    ));
                }
                n += 1;
                let _ = client.try_publish(&topic, QoS::AtMostOnce, false, n.to_be_bytes().to_vec());
            }
            ev = events.poll() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = client.try_subscribe(&topic, QoS::AtMostOnce);
                    if let Some(tx) = connected.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == topic => passed = Instant::now(),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("broker probe: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
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
