//! Logging for the controller's binaries (`farm-controller`, `farm-demo`): to stderr, `info`
//! unless `RUST_LOG` says otherwise, without the embedded broker's per-connection noise.

/// Logging unless `RUST_LOG` says otherwise. rmqtt logs every refused or ended connection at
/// `info` (in a farm those are agents restarting: a reconnect storm of 1,000 printers would be
/// 1,000 such lines beside the farm's own "printer offline", which it logs itself, at most
/// once a minute per printer); its warnings still show. `RUST_LOG=info,rmqtt=debug` brings
/// them back.
const DEFAULT_LOG: &str = "info,rmqtt=warn,rmqtt_net=warn,rumqttc=warn";

/// Logs to stderr (rmqtt's `log` records too).
pub fn init() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
}
