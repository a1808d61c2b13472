//! Ingest: one MQTT message from an agent, verified and applied.
//!
//! Order of checks (cheapest first, nothing parsed before it is authenticated): the topic is
//! ours and an agent channel ([`route`], on the link's task), then, on the printer's lane
//! ([`crate::mqtt::shards`]), the printer is enrolled and [`farm_protocol::open`] checks size,
//! framing, signature, version, printer/topic match and kind ([`apply`]). Every refusal is
//! counted in `farm_mqtt_dropped_total{reason}`; none reaches the farm.

use crate::farm::Farm;
use farm_protocol::messages::{Event, OnlineMessage, StatusMessage};
use farm_protocol::{Channel, PrinterId, open};

/// Handles one publish on the caller's task: [`route`], then [`apply`].
pub fn handle(farm: &Farm, topic: &str, payload: &[u8]) {
    if let Some((printer, channel)) = route(farm, topic) {
        apply(farm, &printer, channel, payload);
    }
}

/// The cheap part: which printer and channel, if the topic is ours and an agent's.
pub fn route(farm: &Farm, topic: &str) -> Option<(PrinterId, Channel)> {
    let m = &farm.metrics;
    let Some((printer, channel)) = farm.topics().parse(topic) else {
        m.mqtt_dropped.inc("foreign_topic");
        return None;
    };
    if !channel.from_agent() {
        return None; // our own commands and acks echoed back by a wildcard subscription
    }
    m.mqtt_received.inc(channel.as_str());
    Some((printer, channel))
}

/// Verifies one routed message with its printer's secret and applies it.
pub fn apply(farm: &Farm, printer: &PrinterId, channel: Channel, payload: &[u8]) {
    let m = &farm.metrics;
    let Some(secret) = farm.secret(printer.as_str()) else {
        m.mqtt_dropped.inc("unknown_printer");
        tracing::debug!(%printer, "message from a printer that is not enrolled");
        return;
    };
    let key = secret.as_bytes();
    let result = match channel {
        Channel::Status => open::<StatusMessage>(payload, key, printer).map(|env| {
            let StatusMessage::Status(s) = env.body;
            farm.apply_status(printer.as_str(), s);
        }),
        Channel::Online => open::<OnlineMessage>(payload, key, printer).map(|env| {
            let OnlineMessage::Online { online } = env.body;
            farm.apply_online(printer.as_str(), online);
        }),
        Channel::Events => open::<Event>(payload, key, printer).map(|env| {
            let Some(seq) = env.seq else {
                m.mqtt_dropped.inc("missing_field");
                return;
            };
            // Applied, committed and acked by the writer thread (group commit); if it is
            // too far behind, the event is not acked and the agent resends it.
            farm.submit_event(printer.as_str(), seq, env.body);
        }),
        Channel::Commands | Channel::Acks => Ok(()),
    };
    if let Err(e) = result {
        m.mqtt_dropped.inc(e.reason());
        tracing::warn!(%printer, channel = channel.as_str(), "dropped message: {e}");
    }
}
