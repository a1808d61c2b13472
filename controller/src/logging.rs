//! Logging for the controller's binaries (`farm-controller`, `farm-demo`): to stderr, `info`
//! unless `RUST_LOG` says otherwise, without the embedded broker's per-connection noise.

/// Logging unless `RUST_LOG` says otherwise.
const DEFAULT_LOG: &str = "info,rumqttd=warn,rumqttc=warn";

/// Logs to stderr. Unless `RUST_LOG` names rumqttd, its per-connection lines (its
/// `remote_link` span) are dropped: it logs the end of every connection as an ERROR, a clean
/// disconnect and a socket closed before its login included, and in a farm those are agents
/// restarting (a reconnect storm of 1,000 printers was 1,000 such lines beside the farm's own
/// 1,000 "printer offline"). The farm logs presence changes itself; the broker's listener
/// errors still show. `RUST_LOG=info,rumqttd=debug` brings the per-connection lines back.
pub fn init() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let explicit = std::env::var("RUST_LOG").is_ok_and(|v| v.contains("rumqttd"));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    const BROKER: &str = "rumqttd::server::broker";
    let broker_connections = tracing_subscriber::filter::dynamic_filter_fn(|meta, cx| {
        !(meta.is_event()
            && meta.target() == BROKER
            && cx
                .lookup_current()
                .is_some_and(|s| s.name() == "remote_link"))
    })
    // Only the broker's own call sites are looked at per event; every other one keeps the
    // level filter's cached verdict.
    .with_callsite_filter(move |meta| {
        if !explicit && meta.target() == BROKER {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::always()
        }
    });
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter)
                .with_filter(broker_connections),
        )
        .init();
}
