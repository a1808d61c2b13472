//! The controller's MQTT connection (to the embedded broker or an external one).
//!
//! One task owns the socket: it feeds every message from agents to [`crate::mqtt::ingest`] in
//! arrival order (the order a printer's events must be applied in), and publishes what the
//! farm queues ([`Outbound`]: commands, acks). rumqttc has no reconnect backoff of its own,
//! so this loop sleeps between attempts.
//!
//! Invariant: outbound messages are taken only while connected. A cancelled `poll()` drops a
//! connection still in its handshake, so a steady flow of outbound messages could otherwise
//! keep a distant broker from ever being reached; they wait in the farm's bounded channel.

use crate::farm::{Farm, Outbound};
use farm_protocol::Channel;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// Events, presence and status: the three subscriptions the link makes on every connect.
const SUBSCRIPTIONS: usize = 3;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Where and how to connect.
#[derive(Clone)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub pass: Option<String>,
}

impl std::fmt::Debug for BrokerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mqtt://{}{}:{}",
            self.user
                .as_deref()
                .map(|u| format!("{u}:***@"))
                .unwrap_or_default(),
            self.host,
            self.port
        )
    }
}

/// Parses `mqtt://[user[:pass]@]host[:port]` (port defaults to 1883).
pub fn parse_url(url: &str) -> Result<BrokerAddress, String> {
    let rest = url.strip_prefix("mqtt://").ok_or_else(|| {
        if url.starts_with("mqtts://") {
            format!("{url}: TLS to an external broker is not supported yet; use mqtt:// on a trusted network or a local TLS-terminating proxy")
        } else {
            format!("{url}: a broker URL looks like mqtt://user:password@host:1883")
        }
    })?;
    let rest = rest.trim_end_matches('/');
    let (userinfo, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (user, pass) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((a, b)) => (Some(a.to_string()), Some(b.to_string())),
            None => (Some(u.to_string()), None),
        },
        None => (None, None),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            p.parse().map_err(|_| format!("{url}: bad port {p:?}"))?,
        ),
        None => (hostport.to_string(), 1883),
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok(BrokerAddress {
        host,
        port,
        user,
        pass,
    })
}

fn fresh_client_id() -> String {
    format!("farm-controller-{}", crate::auth::random_hex(4))
}

pub async fn run(
    farm: Arc<Farm>,
    addr: BrokerAddress,
    mut outbound: mpsc::Receiver<Outbound>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut opts = MqttOptions::new(fresh_client_id(), addr.host.clone(), addr.port);
    opts.set_keep_alive(Duration::from_secs(10));
    opts.set_max_packet_size(
        farm_protocol::MAX_PAYLOAD_BYTES + 4096,
        farm_protocol::MAX_PAYLOAD_BYTES + 4096,
    );
    if let Some(u) = &addr.user {
        opts.set_credentials(u.clone(), addr.pass.clone().unwrap_or_default());
    }
    let (client, mut events) = AsyncClient::new(opts, 10_000);
    // No Nagle: an ack or a command must not wait for the broker's delayed ACK (~40 ms).
    let mut net = events.network_options();
    net.set_tcp_nodelay(true);
    events.set_network_options(net);
    let topics = farm.topics().clone();
    let mut backoff = Duration::from_millis(200);
    let mut subacks = 0;
    let mut connected = false;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            msg = outbound.recv(), if connected => {
                let Some(msg) = msg else { return };
                let qos = if msg.qos1 { QoS::AtLeastOnce } else { QoS::AtMostOnce };
                if client.try_publish(msg.topic, qos, false, msg.payload).is_err() {
                    farm.metrics.publish_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            ev = events.poll() => match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    backoff = Duration::from_millis(200);
                    subacks = 0;
                    tracing::info!(broker = ?addr, "connected to the MQTT broker");
                    for (ch, qos) in [(Channel::Events, QoS::AtLeastOnce), (Channel::Online, QoS::AtLeastOnce), (Channel::Status, QoS::AtMostOnce)] {
                        if let Err(e) = client.try_subscribe(topics.all_printers(ch), qos) {
                            tracing::error!("could not subscribe: {e}");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    subacks += 1;
                    if subacks == SUBSCRIPTIONS {
                        farm.broker_connected.store(true, Relaxed);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => crate::mqtt::ingest::handle(&farm, &p.topic, &p.payload),
                Ok(_) => {}
                Err(e) => {
                    connected = false;
                    farm.broker_connected.store(false, Relaxed);
                    tracing::warn!(broker = ?addr, "MQTT connection lost: {e}; retrying in {backoff:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    // A new client id per connection: with the old one, rumqttd 0.20 would
                    // take over the old session still registered at the broker, and the old
                    // connection's late goodbye can then remove the new one (or, mid-delivery,
                    // panic the router: `scheduler.rs:63`).
                    events.mqtt_options.set_client_id(fresh_client_id());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let a = parse_url("mqtt://u:p@broker.lan:1884").expect("url");
        assert_eq!(
            (
                a.host.as_str(),
                a.port,
                a.user.as_deref(),
                a.pass.as_deref()
            ),
            ("broker.lan", 1884, Some("u"), Some("p"))
        );
        let b = parse_url("mqtt://127.0.0.1").expect("url");
        assert_eq!((b.port, b.user), (1883, None));
        assert!(parse_url("mqtts://x").is_err());
        assert!(parse_url("http://x").is_err());
        assert!(parse_url("mqtt://x:notaport").is_err());
        assert!(
            !format!("{a:?}").contains(":p@"),
            "the password must not be printed"
        );
    }
}
