//! MQTT: the embedded broker, the controller's own connection, and ingest of agents' messages.
//!
//! | file | concern |
//! |---|---|
//! | [`broker`] | the embedded rmqtt broker: listeners, login and ACL hooks, supervision |
//! | [`acl`] | who may log in, publish and subscribe where (pure rules) |
//! | [`link`] | the controller's MQTT connection: routes to ingest, publishes commands and acks |
//! | [`shards`] | ingest's lanes: one task per core, each printer's messages on one lane, in order |
//! | [`ingest`] | one MQTT message from an agent: route, then verify, decode, apply |

pub mod acl;
pub mod broker;
pub mod ingest;
pub mod link;
pub mod shards;
