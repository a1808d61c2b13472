//! Ingest: one MQTT message from an agent, verified and applied.
//!
//! Order of checks (cheapest first, nothing parsed before it is authenticated): the topic is
//! ours and an agent channel, the printer is enrolled, then [`farm_protocol::open`] checks size,
//! framing, signature, version, printer/topic match and kind. Every refusal is counted in
//! `farm_mqtt_dropped_total{reason}`; none reaches the farm.

use crate::farm::{Applied, Farm};
use farm_protocol::messages::{Event, OnlineMessage, StatusMessage};
use farm_protocol::{Channel, open};

/// Handles one publish received from the broker.
pub fn handle(farm: &Farm, topic: &str, payload: &[u8]) {
    let m = &farm.metrics;
    let Some((printer, channel)) = farm.topics().parse(topic) else {
        m.mqtt_dropped.inc("foreign_topic");
        return;
    };
    if !channel.from_agent() {
        return; // our own commands and acks echoed back by a wildcard subscription
    }
    m.mqtt_received.inc(channel.as_str());
    let Some(secret) = farm.secret(printer.as_str()) else {
        m.mqtt_dropped.inc("unknown_printer");
        tracing::debug!(%printer, "message from a printer that is not enrolled");
        return;
    };
    let key = secret.as_bytes();
    let result = match channel {
        Channel::Status => open::<StatusMessage>(payload, key, &printer).map(|env| {
            let StatusMessage::Status(s) = env.body;
            farm.apply_status(printer.as_str(), s);
        }),
        Channel::Online => open::<OnlineMessage>(payload, key, &printer).map(|env| {
            let OnlineMessage::Online { online } = env.body;
            farm.apply_online(printer.as_str(), online);
        }),
        Channel::Events => open::<Event>(payload, key, &printer).map(|env| {
            let Some(seq) = env.seq else {
                m.mqtt_dropped.inc("missing_field");
                return;
            };
            match farm.apply_event(printer.as_str(), seq, &env.body) {
                Ok(Applied::Applied(s) | Applied::Replay(s) | Applied::Gap { have: s }) => {
                    farm.ack(printer.as_str(), s)
                }
                Err(e) => {
                    // Not applied and not acked: the agent resends it.
                    tracing::error!(%printer, seq, "could not apply event: {e}");
                }
            }
        }),
        Channel::Commands | Channel::Acks => Ok(()),
    };
    if let Err(e) = result {
        m.mqtt_dropped.inc(e.reason());
        tracing::warn!(%printer, channel = channel.as_str(), "dropped message: {e}");
    }
}
