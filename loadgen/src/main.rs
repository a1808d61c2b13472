//! `farm-loadgen`: see `farm-loadgen --help` and the crate docs (`lib.rs`).

use clap::Parser;
use farm_loadgen::{Settings, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    let json = settings.json.clone();
    let enrol_only = settings.enrol_only;
    let report = run(settings).await?;
    if enrol_only {
        println!(
            "enrolled {} printers in {:.1} s",
            report.printers + report.flapping,
            report.enrol_s
        );
        return Ok(());
    }
    println!("{report}");
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .map_err(|e| anyhow::anyhow!("cannot write the report to {}: {e}", path.display()))?;
    }
    Ok(())
}
