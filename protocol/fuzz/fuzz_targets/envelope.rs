//! Arbitrary bytes as a signed MQTT payload from a printer: `open` must refuse them with a
//! reason (size, framing, MAC, JSON, version, printer, kind, field), never panic.
#![no_main]

use farm_protocol::PrinterId;
use farm_protocol::envelope::open;
use farm_protocol::messages::Event;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(printer) = "printer-1".parse::<PrinterId>() else {
        return;
    };
    let _ = open::<Event>(data, b"fuzz-key", &printer);
});
