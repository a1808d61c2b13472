//! `farm-loadgen`: see `farm-loadgen --help` and the crate docs (`lib.rs`).

use clap::Parser;
use farm_loadgen::{Settings, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    let json = settings.json.clone();
    let report = run(settings).await?;
    println!("{report}");
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .map_err(|e| anyhow::anyhow!("cannot write the report to {}: {e}", path.display()))?;
    }
    Ok(())
}
