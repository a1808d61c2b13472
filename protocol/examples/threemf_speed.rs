//! Open + analyse one plate of a `.gcode.3mf` against the same G-code as a plain file, both read
//! from disk, `N` interleaved runs each; prints the medians.
//! `cargo run --release -p farm-protocol --example threemf_speed -- FILE.gcode [N]`
//! (FILE may be gzipped; it is packed as `Metadata/plate_1.gcode`, deflated at the default
//! level, into a temporary `.gcode.3mf` beside a plain copy.)
use farm_protocol::gcode::analyze_seekable;
use farm_protocol::threemf::ThreeMf;
use std::io::{BufReader, Read, Write};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: threemf_speed FILE.gcode[.gz] [N]");
    let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(7);
    let raw = std::fs::read(&path).expect("read");
    let mut gcode = vec![];
    if raw.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut gcode)
            .expect("gunzip");
    } else {
        gcode = raw;
    }
    let dir = std::env::temp_dir().join(format!("threemf-speed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let plain = dir.join("plate.gcode");
    std::fs::write(&plain, &gcode).expect("write plain");
    let archive = dir.join("plate.gcode.3mf");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&archive).expect("create"));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file("Metadata/plate_1.gcode", opts).expect("entry");
    w.write_all(&gcode).expect("write");
    w.finish().expect("finish");
    let zipped = std::fs::metadata(&archive).expect("size").len();

    let (mut t_plain, mut t_zip) = (vec![], vec![]);
    for _ in 0..n {
        let t = Instant::now();
        let f = std::fs::File::open(&plain).expect("open");
        let a = analyze_seekable(BufReader::with_capacity(1 << 16, f)).expect("analyse");
        t_plain.push(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let f = std::fs::File::open(&archive).expect("open");
        let mut tm = ThreeMf::open(BufReader::with_capacity(1 << 16, f)).expect("3mf");
        let plate = tm.plate(1).expect("plate 1");
        let b = analyze_seekable(BufReader::with_capacity(1 << 16, plate)).expect("analyse");
        t_zip.push(t.elapsed().as_secs_f64());
        assert_eq!(a, b, "the plate must analyse like the plain file");
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (p, z) = (median(&mut t_plain), median(&mut t_zip));
    let mb = gcode.len() as f64 / 1e6;
    println!(
        "{mb:.2} MB G-code ({:.2} MB zipped), {n} runs: plain {:.0} ms ({:.0} MB/s), .gcode.3mf {:.0} ms ({:.0} MB/s), {:+.0} %",
        zipped as f64 / 1e6,
        p * 1e3,
        mb / p,
        z * 1e3,
        mb / z,
        (z / p - 1.0) * 100.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
