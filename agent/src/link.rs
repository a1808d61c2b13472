//! The MQTT link to the controller (rumqttc, MQTT 3.1.1).
//!
//! One task owns the event loop. On every ConnAck it announces `online: true` (retained; the
//! last will says `false`), subscribes to its `commands` (QoS 1) and `acks` (QoS 0), publishes
//! the latest status, and resends every outbox event in seq order. Events go out QoS 1 and
//! stay in the outbox until the controller's signed `ack{applied_seq}` arrives; if events are
//! pending and no ack has made progress for [`RESEND_AFTER`], the oldest (up to [`BURST`])
//! are resent (the controller ignores what it has already applied). Incoming commands are verified with
//! the printer secret and handed to the runner; anything that fails verification is dropped.
//!
//! rumqttc reconnects when `poll()` is called after an error, immediately; the backoff here
//! (0.5 s doubling to 30 s, ±25 % jitter, reset on ConnAck) keeps a dead broker from being
//! hammered. Publishing never blocks: `try_publish` fails on a full request channel and the
//! event simply stays in the outbox for the next pass.
//!
//! Invariant: nothing but `stop` may win the `select!` against `poll()` until the ConnAck.
//! A cancelled `poll()` drops a connection still in its handshake, so a broker whose
//! handshake takes longer than any other branch's period would never be reached (the
//! housekeeping tick did this to every broker more than 250 ms away).

use crate::config::{Config, ConfigError};
use crate::outbox::Outbox;
use farm_protocol::messages::{AckMessage, Command, OnlineMessage, Status, StatusMessage};
use farm_protocol::{Backoff, BrokerUrl, Channel, Envelope, MAX_PAYLOAD_BYTES, PrinterId, Topics};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS,
    StateError, TlsConfiguration, Transport,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Resend all pending events when none was acknowledged for this long.
pub const RESEND_AFTER: Duration = Duration::from_secs(5);
/// At most this many events are queued into rumqttc per pass.
pub const BURST: usize = 200;
/// rumqttc's request channel; above BURST so a burst and a status always fit.
const REQUEST_CAPACITY: usize = 512;
const KEEP_ALIVE: Duration = Duration::from_secs(8);
const HOUSEKEEPING: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot set up TLS for the broker: {0}")]
    Tls(String),
    #[error("cannot seal a presence message: {0}")]
    Seal(#[from] farm_protocol::envelope::EncodeError),
}

/// Who we are on the broker.
#[derive(Clone)]
pub struct LinkSettings {
    pub printer: PrinterId,
    pub secret: String,
    pub token: String,
    pub topics: Topics,
    pub broker: BrokerUrl,
}

impl LinkSettings {
    pub fn from_config(c: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            printer: c.printer_id.clone(),
            secret: c.secret.clone(),
            token: c.token.clone(),
            topics: c.topics(),
            broker: c.broker()?,
        })
    }

    fn topic(&self, ch: Channel) -> String {
        self.topics.printer(&self.printer, ch)
    }

    fn online(&self, online: bool) -> Result<Vec<u8>, LinkError> {
        let env = Envelope::new(self.printer.clone(), OnlineMessage::Online { online });
        Ok(farm_protocol::seal(&env, self.secret.as_bytes())?)
    }

    fn options(&self) -> Result<MqttOptions, LinkError> {
        let id = self.printer.as_str();
        let mut o = MqttOptions::new(id, self.broker.host.clone(), self.broker.port);
        o.set_credentials(id, self.token.clone())
            .set_keep_alive(KEEP_ALIVE)
            // Room for the largest envelope plus MQTT framing and topic.
            .set_max_packet_size(MAX_PAYLOAD_BYTES + 4096, MAX_PAYLOAD_BYTES + 4096)
            // Keep the broker-side session, so commands sent during a short outage still
            // arrive; duplicates are harmless (command ids and seqs are deduplicated).
            .set_clean_session(false)
            .set_last_will(LastWill::new(
                self.topic(Channel::Online),
                self.online(false)?,
                QoS::AtLeastOnce,
                true,
            ));
        if self.broker.tls {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(tls_config()?),
            )));
        }
        Ok(o)
    }
}

/// A rustls client config with the system's CA certificates and the ring provider (no
/// dependence on a process-wide default provider).
fn tls_config() -> Result<rustls::ClientConfig, LinkError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(LinkError::Tls(
            "no CA certificates found on this system; install ca-certificates or set SSL_CERT_FILE"
                .into(),
        ));
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| LinkError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(cfg)
}

/// Broker reconnects: 0.5 s doubling to 30 s, ±25 %: a whole farm of agents loses the broker
/// at once when the controller restarts, and the jitter keeps them from all coming back in
/// the same instant; 30 s keeps an outage's end noticed within half a minute.
const RECONNECT: Backoff =
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30)).with_jitter(0.25);

/// Explains a connection error, with a hint when it smells of bad credentials.
fn describe(e: &ConnectionError, while_connecting: bool) -> String {
    use rumqttc::ConnectReturnCode as Rc;
    match e {
        ConnectionError::ConnectionRefused(Rc::BadUserNamePassword | Rc::NotAuthorized) => {
            format!("{e}: the broker refused printer_id/token; check the token in the config")
        }
        // Some brokers (rumqttd, which the controller embedded before rmqtt) answer bad
        // credentials by closing the socket without a CONNACK code.
        ConnectionError::MqttState(StateError::ConnectionAborted) if while_connecting => format!(
            "{e}: if this repeats, the broker may be refusing the credentials; check that token matches what `printer add` printed"
        ),
        ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!(
                "{e}: nothing listens at the broker address; is the controller running and broker_url right?"
            )
        }
        _ => e.to_string(),
    }
}

/// The live connection state of one link.
/// What [`Session::publish_events`] managed to queue.
struct Queued {
    last: Option<u64>,
    complete: bool,
}

struct Session {
    settings: LinkSettings,
    client: AsyncClient,
    outbox: Outbox,
    commands: mpsc::UnboundedSender<Envelope<Command>>,
    acks: watch::Sender<u64>,
    events_topic: String,
    connected: bool,
    /// The lowest seq not yet handed to rumqttc on this connection.
    next_send: u64,
    /// Highest `applied_seq` the controller sent, and when it last grew.
    acked: u64,
    last_progress: Instant,
}

impl Session {
    fn publish_status(&self, status: Option<&Status>) {
        let Some(status) = status else { return };
        let env = Envelope::new(
            self.settings.printer.clone(),
            StatusMessage::Status(status.clone()),
        );
        match farm_protocol::seal(&env, self.settings.secret.as_bytes()) {
            // A status that does not fit is only stale; the next one replaces it.
            Ok(wire) => {
                let topic = self.settings.topic(Channel::Status);
                if let Err(e) = self.client.try_publish(topic, QoS::AtMostOnce, true, wire) {
                    tracing::debug!(error = %e, "status not queued");
                }
            }
            Err(e) => tracing::warn!(error = %e, "status not sealed"),
        }
    }

    fn publish_online(&self, online: bool) {
        match self.settings.online(online) {
            Ok(wire) => {
                let topic = self.settings.topic(Channel::Online);
                if let Err(e) = self.client.try_publish(topic, QoS::AtLeastOnce, true, wire) {
                    tracing::warn!(error = %e, "presence not queued");
                }
            }
            Err(e) => tracing::warn!(error = %e, "presence not sealed"),
        }
    }

    fn on_connack(&mut self, session_present: bool, status: Option<&Status>) {
        self.connected = true;
        tracing::info!(session_present, "connected to the broker");
        self.publish_online(true);
        for (ch, qos) in [
            (Channel::Commands, QoS::AtLeastOnce),
            (Channel::Acks, QoS::AtMostOnce),
        ] {
            if let Err(e) = self.client.try_subscribe(self.settings.topic(ch), qos) {
                tracing::warn!(error = %e, channel = ch.as_str(), "subscribe not queued");
            }
        }
        self.publish_status(status);
        // Resend everything not yet applied, in seq order.
        self.next_send = 0;
        self.last_progress = Instant::now();
    }

    /// Queues the next events (from `next_send`) without ever blocking.
    async fn send_pending(&mut self) {
        let before = self.outbox.state();
        let rows = match self.outbox.pending_from(self.next_send, BURST).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox");
                return;
            }
        };
        let all = rows.len() < BURST;
        let queued = self.publish_events(rows);
        if let Some(seq) = queued.last {
            self.next_send = seq + 1;
        }
        if all && queued.complete {
            self.next_send = self.next_send.max(before.last_seq + 1);
        }
    }

    /// Re-queues the oldest pending events. Only the oldest matter: the controller applies
    /// strictly in order, so a lost early event blocks everything after it.
    async fn resend_oldest(&mut self) {
        let rows = match self.outbox.pending_from(0, BURST).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the outbox");
                return;
            }
        };
        self.publish_events(rows);
    }

    /// Queues sealed events for the broker in order, stopping at the first that does not fit
    /// (a full request channel): what was not queued stays in the outbox for a later try.
    fn publish_events(&self, rows: Vec<(u64, Vec<u8>)>) -> Queued {
        let mut queued = Queued {
            last: None,
            complete: true,
        };
        for (seq, wire) in rows {
            let topic = self.events_topic.clone();
            if self
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, wire)
                .is_err()
            {
                queued.complete = false;
                break;
            }
            queued.last = Some(seq);
        }
        queued
    }

    /// Runs only while connected (see the invariant above).
    async fn housekeeping(&mut self) {
        let st = self.outbox.state();
        if st.pending == 0 {
            self.last_progress = Instant::now();
        } else if self.last_progress.elapsed() >= RESEND_AFTER {
            tracing::info!(
                pending = st.pending,
                "no ack for {RESEND_AFTER:?}; resending the oldest pending events"
            );
            self.last_progress = Instant::now();
            self.resend_oldest().await;
        }
        if self.next_send <= st.last_seq {
            // Events not yet queued on this connection (the request channel was full).
            self.send_pending().await;
        }
    }

    fn on_publish(&mut self, topic: &str, payload: &[u8]) {
        let key = self.settings.secret.as_bytes();
        let me = &self.settings.printer;
        match self.settings.topics.parse(topic) {
            Some((p, Channel::Commands)) if &p == me => {
                match farm_protocol::open::<Command>(payload, key, me) {
                    Ok(env) if env.command_id.is_some() => {
                        // The runner is gone only while stopping.
                        let _ = self.commands.send(env);
                    }
                    Ok(_) => tracing::warn!("dropped a command without command_id"),
                    Err(e) => {
                        tracing::warn!(reason = e.reason(), error = %e, "dropped a command that failed verification")
                    }
                }
            }
            Some((p, Channel::Acks)) if &p == me => {
                match farm_protocol::open::<AckMessage>(payload, key, me) {
                    Ok(env) => {
                        let AckMessage::Ack { applied_seq } = env.body;
                        if applied_seq > self.acked {
                            self.acked = applied_seq;
                            self.last_progress = Instant::now();
                        }
                        self.acks.send_if_modified(|cur| {
                            let changed = *cur != applied_seq;
                            *cur = applied_seq;
                            changed
                        });
                    }
                    Err(e) => {
                        tracing::warn!(reason = e.reason(), error = %e, "dropped an ack that failed verification")
                    }
                }
            }
            _ => tracing::debug!(topic, "ignored a message on a foreign topic"),
        }
    }

    /// Says `online: false` and disconnects cleanly (a clean disconnect suppresses the will).
    async fn goodbye(&mut self, eventloop: &mut EventLoop) {
        if !self.connected {
            return;
        }
        self.publish_online(false);
        let _ = self.client.try_disconnect();
        let flushed = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        if flushed.is_err() {
            tracing::warn!("could not say goodbye to the broker in time");
        }
    }
}

/// A configured link, ready to run. Building it checks the settings (TLS roots, presence
/// sealing) so that such problems are fatal at start-up rather than retried forever.
pub struct Link {
    settings: LinkSettings,
    options: MqttOptions,
}

impl Link {
    pub fn new(settings: LinkSettings) -> Result<Self, LinkError> {
        let options = settings.options()?;
        Ok(Self { settings, options })
    }

    /// Runs the link until `stop` fires. Verified commands go to `commands`.
    pub async fn run(
        self,
        outbox: Outbox,
        mut status: watch::Receiver<Option<Status>>,
        commands: mpsc::UnboundedSender<Envelope<Command>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let Link { settings, options } = self;
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        // No Nagle: an event or a command's answer must not wait for the broker's delayed ACK.
        let mut net = eventloop.network_options();
        net.set_tcp_nodelay(true);
        eventloop.set_network_options(net);
        // Acks are applied off the poll loop: each is a redb commit (an fsync).
        let (acks, mut ack_rx) = watch::channel(0u64);
        let ack_outbox = outbox.clone();
        let acker = tokio::spawn(async move {
            while ack_rx.changed().await.is_ok() {
                let n = *ack_rx.borrow_and_update();
                match ack_outbox.ack(n).await {
                    Ok(o) if o.renumbered > 0 => tracing::warn!(
                        applied_seq = n,
                        renumbered = o.renumbered,
                        "the controller had applied events beyond ours (state_dir lost or replaced?); pending events were given new seqs"
                    ),
                    Ok(o) => tracing::debug!(applied_seq = n, deleted = o.deleted, "ack applied"),
                    Err(e) => tracing::warn!(error = %e, "cannot apply an ack"),
                }
            }
        });
        let mut outbox_state = outbox.watch();
        let mut s = Session {
            events_topic: settings.topic(Channel::Events),
            settings,
            client,
            outbox,
            commands,
            acks,
            connected: false,
            next_send: 0,
            acked: 0,
            last_progress: Instant::now(),
        };
        let mut backoff = RECONNECT;
        let mut tick = tokio::time::interval(HOUSEKEEPING);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(broker = %s.settings.broker, "connecting");

        loop {
            tokio::select! {
                _ = crate::stopped(&mut stop) => {
                    s.goodbye(&mut eventloop).await;
                    break;
                }
                ev = eventloop.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        backoff.reset();
                        s.on_connack(ack.session_present, status.borrow_and_update().as_ref());
                        outbox_state.borrow_and_update();
                        s.send_pending().await;
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => s.on_publish(&p.topic, &p.payload),
                    Ok(_) => {}
                    Err(e) => {
                        let while_connecting = !s.connected;
                        s.connected = false;
                        let delay = backoff.next(rand::random_range(-1.0..=1.0));
                        tracing::warn!("broker connection: {}; retrying in {:.1} s", describe(&e, while_connecting), delay.as_secs_f64());
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = crate::stopped(&mut stop) => break,
                        }
                    }
                },
                r = outbox_state.changed(), if s.connected => {
                    if r.is_ok() {
                        s.send_pending().await;
                    }
                }
                r = status.changed(), if s.connected => {
                    if r.is_ok() {
                        s.publish_status(status.borrow_and_update().as_ref());
                    }
                }
                _ = tick.tick(), if s.connected => s.housekeeping().await,
            }
        }
        drop(s);
        let _ = acker.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_socket_while_connecting_hints_at_the_token() {
        let e = ConnectionError::MqttState(StateError::ConnectionAborted);
        assert!(describe(&e, true).contains("token"));
        assert!(!describe(&e, false).contains("token"));
    }
}
