//! MQTT: the embedded broker, the controller's own connection, and ingest of agents' messages.
//!
//! | file | concern |
//! |---|---|
//! | [`broker`] | the embedded rmqtt broker: listeners, login and ACL hooks, supervision |
//! | [`acl`] | who may log in, publish and subscribe where (pure rules) |
//! | [`link`] | the controller's MQTT connection: feeds ingest, publishes commands and acks |
//! | [`ingest`] | one MQTT message from an agent: verify, decode, apply, ack |

pub mod acl;
pub mod broker;
pub mod ingest;
pub mod link;
