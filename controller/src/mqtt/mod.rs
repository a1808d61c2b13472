//! MQTT: the embedded broker, the controller's own connection, and ingest of agents' messages.
//!
//! | file | concern |
//! |---|---|
//! | [`broker`] | the embedded rumqttd broker and its login check |
//! | [`link`] | the controller's MQTT connection: feeds ingest, publishes commands and acks |
//! | [`ingest`] | one MQTT message from an agent: verify, decode, apply, ack |

pub mod broker;
pub mod ingest;
pub mod link;
