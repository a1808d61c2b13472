//! The full analysis (time estimation included) of one file, `N` times in one process, from
//! memory: `scripts/compare-analyzer.sh` measures its CPU time for the "analyzer cpu" column.
//! `cargo run --release -p farm-protocol --example analyze_speed -- FILE [N]`
use farm_protocol::gcode::analyze_seekable;
use std::io::Cursor;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: analyze_speed FILE.gcode [N]");
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);
    let data = std::fs::read(&path).expect("read");
    let t = Instant::now();
    let mut s = 0.0;
    for _ in 0..n {
        s += analyze_seekable(Cursor::new(&data))
            .expect("in memory")
            .estimated_s;
    }
    let mbs = (data.len() * n) as f64 / t.elapsed().as_secs_f64() / 1e6;
    println!("{mbs:.0} MB/s wall ({:.0} s estimated)", s / n as f64);
}
