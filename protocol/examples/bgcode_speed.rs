//! Decoding speed of a `.bgcode` alone (no analysis), `N` times in one process, from memory:
//! `cargo run --release -p farm-protocol --example bgcode_speed -- FILE.bgcode [N]`.
//! `analyze_speed` on the same file gives decode + analysis.
use farm_protocol::bgcode::Decoder;
use std::io::Read;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: bgcode_speed FILE.bgcode [N]");
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);
    let data = std::fs::read(&path).expect("read");
    let t = Instant::now();
    let mut text = 0;
    for _ in 0..n {
        let mut d = Decoder::new(&data[..]).expect("a .bgcode file");
        text = std::io::copy(&mut d.by_ref(), &mut std::io::sink()).expect("decodes");
    }
    let s = t.elapsed().as_secs_f64();
    let mb = |b: usize| b as f64 * n as f64 / s / 1e6;
    println!(
        "decode: {:.0} MB/s of binary, {:.0} MB/s of text ({} → {text} bytes)",
        mb(data.len()),
        mb(text as usize),
        data.len()
    );
}
