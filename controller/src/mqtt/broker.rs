//! The embedded MQTT broker (rumqttd), for farms that do not run their own.
//!
//! Agents log in with username = printer id and password = their token; the controller logs
//! in with a random password minted at start. The client id must equal the username, so one
//! agent cannot take over another's session (MQTT disconnects the older holder of a client id).
//! Traps handled here (deps.md §2.4): every router field is set (the defaults forward nothing),
//! and the listen port is checked before the broker thread starts, because rumqttd reports a
//! failed bind only inside its own thread.

use crate::farm::Farm;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Credentials of the controller's own connection to the embedded broker.
#[derive(Clone)]
pub struct Embedded {
    pub addr: SocketAddr,
    pub user: String,
    pub pass: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "cannot listen for MQTT on {addr}: {err} (is another broker running there? choose another port with --mqtt-listen)"
    )]
    Bind {
        addr: SocketAddr,
        err: std::io::Error,
    },
    #[error("could not start the broker thread: {0}")]
    Thread(std::io::Error),
}

pub fn start(listen: SocketAddr, farm: Arc<Farm>) -> Result<Embedded, BrokerError> {
    // Probe the port so a clash is reported here, not lost inside rumqttd's thread.
    drop(
        std::net::TcpListener::bind(listen)
            .map_err(|err| BrokerError::Bind { addr: listen, err })?,
    );
    let user = format!("farm-controller-{}", crate::auth::random_hex(4));
    let pass = crate::auth::random_hex(24);
    let mut server = ServerSettings {
        name: "v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            // A client that connects and says nothing is dropped after this; others are not held up.
            connection_timeout_ms: 5_000,
            max_payload_size: farm_protocol::MAX_PAYLOAD_BYTES + 4096,
            max_inflight_count: 200,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let (u, p) = (user.clone(), pass.clone());
    server.set_auth_handler(
        move |client_id: String, username: String, password: String| {
            let ok = if username == u {
                password == p
            } else {
                client_id == username && farm.broker_login(&username, &password)
            };
            if !ok {
                tracing::warn!(
                    client_id,
                    username,
                    "broker refused a login (wrong token, or client id ≠ username)"
                );
            }
            async move { ok }
        },
    );
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_000,
            max_outgoing_packet_count: 200,
            max_segment_size: 1 << 20,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("v4".to_string(), server)])),
        ..Default::default()
    };
    let mut broker = Broker::new(config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!("embedded MQTT broker stopped: {e}");
            }
        })
        .map_err(BrokerError::Thread)?;
    // rumqttd binds inside its thread; wait (briefly) until it accepts, so the first
    // connection attempt of the controller's own link succeeds.
    let probe = if listen.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    };
    let t0 = std::time::Instant::now();
    while std::net::TcpStream::connect_timeout(&probe, std::time::Duration::from_millis(100))
        .is_err()
    {
        if t0.elapsed() > std::time::Duration::from_secs(5) {
            tracing::warn!(%listen, "the embedded broker is not accepting connections yet; continuing");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    tracing::info!(%listen, "embedded MQTT broker listening");
    Ok(Embedded {
        addr: listen,
        user,
        pass,
    })
}
