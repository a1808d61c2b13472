//! The controller's MQTT connection (to the embedded broker or an external one).
//!
//! One task owns the socket: it routes every message from agents to its printer's ingest
//! lane ([`crate::mqtt::shards`]: verified and applied there, each printer's in arrival
//! order, the order its events must be applied in), and publishes what the farm queues
//! ([`Outbound`]: commands, acks). Routing is a topic parse and a channel send, so this loop
//! keeps polling rumqttc's event loop (which reads the socket and answers the broker's acks
//! and pings only while polled) and takes outbound messages between publishes; it waits only
//! when a lane is full and the message is an event or presence (backpressure to the broker,
//! see `shards`). rumqttc has no reconnect backoff of its own, so this loop sleeps between
//! attempts.
//!
//! Invariant: outbound messages are taken only while connected. A cancelled `poll()` drops a
//! connection still in its handshake, so a steady flow of outbound messages could otherwise
//! keep a distant broker from ever being reached; they wait in the farm's bounded channel.

use crate::farm::{Farm, Outbound};
use farm_protocol::{Backoff, BrokerUrl, Channel};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// Events, presence and status: the three subscriptions the link makes on every connect.
const SUBSCRIPTIONS: usize = 3;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Reads `--broker` / `broker_url` with the shared parser. This link cannot do TLS yet, so
/// `mqtts://` is refused here (agents do speak it).
pub fn parse_url(url: &str) -> Result<BrokerUrl, String> {
    let b = BrokerUrl::parse(url).map_err(|e| e.to_string())?;
    if b.tls {
        return Err(format!(
            "{b}: the controller cannot speak TLS to a broker yet; use mqtt://host:1883 on a trusted network, or a TLS-terminating proxy beside the controller"
        ));
    }
    Ok(b)
}

/// Reconnects to the broker: 0.2 s doubling to 10 s, no jitter. There is one controller link,
/// usually to the broker in its own process or on its LAN, and every printer's news waits on
/// it, so a returned broker is found within 10 s.
const RECONNECT: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

fn fresh_client_id() -> String {
    format!("farm-controller-{}", crate::auth::random_hex(4))
}

pub async fn run(
    farm: Arc<Farm>,
    addr: BrokerUrl,
    mut outbound: mpsc::Receiver<Outbound>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut opts = MqttOptions::new(fresh_client_id(), addr.host.clone(), addr.port);
    // The broker's PINGRESP queues behind every message it has for us, and rumqttc drops
    // the connection when a ping is still unanswered one keep-alive later. At 5,000
    // printers on a busy machine that queue was >10 s deep, so a 10 s keep-alive cut the
    // link again and again (a clean session each time: everything queued was lost). A dead
    // broker is still found within a minute (the embedded one by its probe much sooner).
    opts.set_keep_alive(Duration::from_secs(60));
    opts.set_max_packet_size(
        farm_protocol::MAX_PAYLOAD_BYTES + 4096,
        farm_protocol::MAX_PAYLOAD_BYTES + 4096,
    );
    if let Some(u) = &addr.user {
        opts.set_credentials(u.clone(), addr.password.clone().unwrap_or_default());
    }
    let (client, mut events) = AsyncClient::new(opts, 10_000);
    // No Nagle: an ack or a command must not wait for the broker's delayed ACK (~40 ms).
    let mut net = events.network_options();
    net.set_tcp_nodelay(true);
    events.set_network_options(net);
    let topics = farm.topics().clone();
    let shards = crate::mqtt::shards::Shards::start(farm.clone());
    let mut backoff = RECONNECT;
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
                    backoff.reset();
                    subacks = 0;
                    tracing::info!(broker = %addr, "connected to the MQTT broker");
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
                Ok(Event::Incoming(Packet::Publish(p))) => shards.dispatch(&p.topic, p.payload).await,
                Ok(_) => {}
                Err(e) => {
                    connected = false;
                    farm.broker_connected.store(false, Relaxed);
                    let delay = backoff.next(0.0);
                    tracing::warn!(broker = %addr, "MQTT connection lost: {e}; retrying in {delay:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => return,
                    }
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
                a.password.as_deref()
            ),
            ("broker.lan", 1884, Some("u"), Some("p"))
        );
        assert_eq!(parse_url("mqtt://[::1]").expect("url").port, 1883);
        let tls = parse_url("mqtts://x").expect_err("no TLS yet");
        assert!(tls.contains("TLS"), "{tls}");
        assert!(parse_url("http://x").is_err());
        assert!(
            !format!("{a:?}").contains(":p@"),
            "the password must not be printed"
        );
    }
}
