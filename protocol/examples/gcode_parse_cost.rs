//! Splits where the analyzer's time goes: line splitting + parsing alone, then + the machine
//! (planner included). `cargo run --release -p farm-protocol --example gcode_parse_cost -- FILE`
use farm_protocol::gcode::{Content, LineSplitter, Machine, parse_line};
use std::time::Instant;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: gcode_parse_cost FILE.gcode");
    let data = std::fs::read(path).expect("read");
    for with_machine in [false, true] {
        let t = Instant::now();
        let mut m = Machine::default();
        let mut n = 0u64;
        for _ in 0..10 {
            let mut s = LineSplitter::default();
            let mut rest = &data[..];
            while !rest.is_empty() {
                let (took, eol) = s.feed(rest);
                rest = &rest[took..];
                if eol || rest.is_empty() {
                    if let Content::Text(t) = s.content() {
                        let l = parse_line(t);
                        if with_machine {
                            m.step(&l);
                        } else if l.letter.is_some() {
                            n += 1;
                        }
                    }
                    s.clear();
                }
            }
        }
        let mbs = (data.len() * 10) as f64 / t.elapsed().as_secs_f64() / 1e6;
        println!(
            "machine {with_machine}: {mbs:.0} MB/s ({n} {:.0})",
            m.finish()
        );
    }
}
