//! MQTT topics of contract v1: `{root}/v1/printers/{printer}/{channel}`.

use crate::ids::PrinterId;

/// The per-printer channels. Direction, QoS and retain flags are fixed by the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// agent → controller, QoS 0, retained: latest snapshot.
    Status,
    /// agent → controller, QoS 1: durable, ordered events with `seq`.
    Events,
    /// agent → controller, QoS 1, retained: presence (also the last will).
    Online,
    /// controller → agent, QoS 1: commands with a unique `command_id`.
    Commands,
    /// controller → agent, QoS 0: "events up to seq N are applied" (lets the agent forget them).
    Acks,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::Status,
        Channel::Events,
        Channel::Online,
        Channel::Commands,
        Channel::Acks,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Status => "status",
            Channel::Events => "events",
            Channel::Online => "online",
            Channel::Commands => "commands",
            Channel::Acks => "acks",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// True for channels an agent publishes on.
    pub fn from_agent(self) -> bool {
        matches!(self, Channel::Status | Channel::Events | Channel::Online)
    }
}

/// Topic names under one configurable root (default `farm`).
#[derive(Clone, Debug)]
pub struct Topics {
    root: String,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid topic root {0:?}: use a non-empty MQTT topic prefix without '+', '#' or a trailing '/'"
)]
pub struct InvalidRoot(pub String);

impl Default for Topics {
    fn default() -> Self {
        Self {
            root: "farm".into(),
        }
    }
}

impl Topics {
    pub fn new(root: &str) -> Result<Self, InvalidRoot> {
        // `$` topics belong to the broker; empty levels make topics that are easy to mistype.
        if root.is_empty()
            || root.contains(['+', '#', '\0'])
            || root.starts_with('$')
            || root.split('/').any(str::is_empty)
        {
            return Err(InvalidRoot(root.into()));
        }
        Ok(Self { root: root.into() })
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn printer(&self, printer: &PrinterId, channel: Channel) -> String {
        format!("{}/v1/printers/{}/{}", self.root, printer, channel.as_str())
    }

    /// The wildcard filter for one channel across all printers (what the controller subscribes to).
    pub fn all_printers(&self, channel: Channel) -> String {
        format!("{}/v1/printers/+/{}", self.root, channel.as_str())
    }

    /// Splits a topic into printer and channel; `None` for anything outside the contract.
    pub fn parse(&self, topic: &str) -> Option<(PrinterId, Channel)> {
        let rest = topic
            .strip_prefix(&self.root)?
            .strip_prefix("/v1/printers/")?;
        let (printer, channel) = rest.split_once('/')?;
        Some((PrinterId::new(printer).ok()?, Channel::parse(channel)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_channel() {
        let t = Topics::new("shop/farm").expect("root");
        let p = PrinterId::new("p-1").expect("id");
        for c in Channel::ALL {
            let topic = t.printer(&p, c);
            assert_eq!(t.parse(&topic), Some((p.clone(), c)));
        }
        assert_eq!(
            t.printer(&p, Channel::Status),
            "shop/farm/v1/printers/p-1/status"
        );
        assert_eq!(
            t.all_printers(Channel::Events),
            "shop/farm/v1/printers/+/events"
        );
    }

    #[test]
    fn foreign_topics_do_not_parse() {
        let t = Topics::default();
        for topic in [
            "farm/v2/printers/p/status",
            "farm/v1/printers/p/status/extra",
            "farm/v1/printers/P/status",
            "farm/v1/printers//status",
            "other/v1/printers/p/status",
            "farm/v1/printers/p/bogus",
        ] {
            assert_eq!(t.parse(topic), None, "{topic}");
        }
    }

    #[test]
    fn bad_roots_are_refused() {
        for r in ["", "a/#", "+", "a/", "/a", "a//b", "$SYS"] {
            assert!(Topics::new(r).is_err(), "{r:?}");
        }
    }
}
