//! The envelope every message travels in, and its HMAC-SHA256 seal.
//!
//! Wire form of one MQTT payload (UTF-8):
//!
//! ```text
//! {"v":1,"printer":"p-1","ts":"2026-11-22T10:00:00Z","kind":"job_started","seq":7,"body":{...}}\n
//! 3f5a…(64 lower-case hex digits: HMAC-SHA256(printer secret, the JSON bytes before the newline))
//! ```
//!
//! The signature covers the exact JSON bytes, so no canonical JSON is needed: a receiver
//! splits at the last newline, checks the MAC, and only then parses. Checks run cheapest
//! first and each failure has its own [`DecodeError`] variant, so drops can be counted by reason.

use crate::ids::PrinterId;
use crate::messages::{Body, Needs};
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Contract version carried in `v`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest payload either side sends or accepts. Larger ones are refused, never truncated.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
const SIG_HEX_LEN: usize = 64;

/// One message: header fields plus a typed body (`kind` + `body` on the wire).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope<B> {
    pub v: u32,
    pub printer: PrinterId,
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    /// Events only: strictly increasing per printer, survives agent restarts, starts at 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Commands only: unique per command; the agent executes each at most once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    #[serde(flatten)]
    pub body: B,
}

impl<B> Envelope<B> {
    /// A v1 envelope stamped now.
    pub fn new(printer: PrinterId, body: B) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            printer,
            ts: OffsetDateTime::now_utc(),
            seq: None,
            command_id: None,
            body,
        }
    }

    pub fn with_seq(mut self, seq: u64) -> Self {
        self.seq = Some(seq);
        self
    }

    pub fn with_command_id(mut self, id: impl Into<String>) -> Self {
        self.command_id = Some(id.into());
        self
    }
}

/// Why a payload was refused. Each variant is counted separately by the controller.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("payload of {0} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("payload is not `<json>\\n<64 hex digit signature>`")]
    BadFraming,
    #[error("signature does not verify with this printer's secret")]
    BadSignature,
    #[error("malformed JSON envelope: {0}")]
    Malformed(String),
    #[error("unsupported protocol version {0} (this side speaks {PROTOCOL_VERSION})")]
    Version(u32),
    #[error("envelope names printer {inside:?} but arrived on printer {topic:?}'s topic")]
    PrinterMismatch { inside: String, topic: String },
    #[error("unknown message kind {0:?} for this channel")]
    UnknownKind(String),
    #[error("events need a seq ≥ 1 and commands a command_id")]
    MissingField,
}

impl DecodeError {
    /// A short stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooLarge(_) => "too_large",
            DecodeError::BadFraming => "bad_framing",
            DecodeError::BadSignature => "bad_signature",
            DecodeError::Malformed(_) => "malformed",
            DecodeError::Version(_) => "version",
            DecodeError::PrinterMismatch { .. } => "printer_mismatch",
            DecodeError::UnknownKind(_) => "unknown_kind",
            DecodeError::MissingField => "missing_field",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {0} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit; it was not sent")]
    TooLarge(usize),
    #[error("could not encode message: {0}")]
    Json(#[from] serde_json::Error),
}

fn mac(key: &[u8], json: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(json);
    m
}

/// Serialises and signs an envelope with the printer's secret.
pub fn seal<B: Serialize>(env: &Envelope<B>, key: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let mut out = serde_json::to_vec(env)?;
    let tag = mac(key, &out).finalize().into_bytes();
    out.push(b'\n');
    out.extend_from_slice(hex::encode(tag).as_bytes());
    if out.len() > MAX_PAYLOAD_BYTES {
        return Err(EncodeError::TooLarge(out.len()));
    }
    Ok(out)
}

/// Splits a payload into its JSON bytes and signature, checking size and framing only.
pub fn split(payload: &[u8]) -> Result<(&[u8], [u8; 32]), DecodeError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(DecodeError::TooLarge(payload.len()));
    }
    let nl = payload
        .iter()
        .rposition(|&b| b == b'\n')
        .ok_or(DecodeError::BadFraming)?;
    let (json, sig) = (&payload[..nl], &payload[nl + 1..]);
    if sig.len() != SIG_HEX_LEN {
        return Err(DecodeError::BadFraming);
    }
    let mut tag = [0u8; 32];
    hex::decode_to_slice(sig, &mut tag).map_err(|_| DecodeError::BadFraming)?;
    Ok((json, tag))
}

#[derive(Deserialize)]
struct Header {
    v: u32,
    printer: String,
    kind: String,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    command_id: Option<String>,
}

/// Verifies and decodes a payload that arrived on `topic_printer`'s topic.
///
/// Order: size, framing, signature (constant time), JSON, version, printer, kind, body.
/// Nothing is parsed before the signature holds, so unauthenticated input costs one MAC.
pub fn open<B: Body>(
    payload: &[u8],
    key: &[u8],
    topic_printer: &PrinterId,
) -> Result<Envelope<B>, DecodeError> {
    let (json, tag) = split(payload)?;
    mac(key, json)
        .verify_slice(&tag)
        .map_err(|_| DecodeError::BadSignature)?;
    // One parse for a good message (every one but a rare refusal): the whole envelope, then
    // its header checked. Only if that fails, or a check does, is the header parsed alone,
    // to say which rule the message broke, in the order below.
    if let Ok(env) = serde_json::from_slice::<Envelope<B>>(json) {
        let present = match B::NEEDS {
            Needs::Nothing => true,
            Needs::Seq => env.seq.is_some_and(|s| s >= 1),
            Needs::CommandId => env.command_id.as_deref().is_some_and(|c| !c.is_empty()),
        };
        if env.v == PROTOCOL_VERSION && env.printer == *topic_printer && present {
            return Ok(env);
        }
    }
    let header: Header =
        serde_json::from_slice(json).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if header.v != PROTOCOL_VERSION {
        return Err(DecodeError::Version(header.v));
    }
    if header.printer != topic_printer.as_str() {
        return Err(DecodeError::PrinterMismatch {
            inside: header.printer,
            topic: topic_printer.to_string(),
        });
    }
    if !B::KINDS.contains(&header.kind.as_str()) {
        return Err(DecodeError::UnknownKind(header.kind));
    }
    let present = match B::NEEDS {
        Needs::Nothing => true,
        Needs::Seq => header.seq.is_some_and(|s| s >= 1),
        Needs::CommandId => header.command_id.as_deref().is_some_and(|c| !c.is_empty()),
    };
    if !present {
        return Err(DecodeError::MissingField);
    }
    serde_json::from_slice(json).map_err(|e| DecodeError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Command, Event, Outcome, Status};

    fn printer(s: &str) -> PrinterId {
        PrinterId::new(s).expect("valid id")
    }

    fn finished() -> Envelope<Event> {
        Envelope::new(
            printer("p-1"),
            Event::JobFinished {
                job_id: "job-9".into(),
                outcome: Outcome::Cancelled,
                reason: Some("operator".into()),
                extruded_mm: vec![1234.5, 0.0],
                duration_s: 61.0,
            },
        )
        .with_seq(42)
    }

    #[test]
    fn envelope_round_trip() {
        let env = finished();
        let wire = seal(&env, b"secret").expect("seal");
        let back: Envelope<Event> = open(&wire, b"secret", &printer("p-1")).expect("open");
        assert_eq!(back.body, env.body);
        assert_eq!(back.seq, Some(42));
        assert_eq!(back.ts.unix_timestamp(), env.ts.unix_timestamp());
        // The documented wire shape: kind and body beside the header fields.
        let (json, _) = split(&wire).expect("split");
        let v: serde_json::Value = serde_json::from_slice(json).expect("json");
        assert_eq!(v["kind"], "job_finished");
        assert_eq!(v["body"]["outcome"], "cancelled");
        assert_eq!(v["v"], 1);
    }

    #[test]
    fn a_flipped_byte_anywhere_is_refused() {
        let wire = seal(&finished(), b"secret").expect("seal");
        for i in 0..wire.len() {
            let mut w = wire.clone();
            w[i] ^= 0x01;
            assert!(
                open::<Event>(&w, b"secret", &printer("p-1")).is_err(),
                "flip at byte {i} accepted"
            );
        }
    }

    #[test]
    fn a_wrong_key_is_refused() {
        let wire = seal(&finished(), b"secret").expect("seal");
        let err = open::<Event>(&wire, b"other", &printer("p-1")).expect_err("must fail");
        assert!(matches!(err, DecodeError::BadSignature), "{err}");
    }

    #[test]
    fn a_topic_printer_mismatch_is_refused() {
        // Signed with p-1's key, but sent on p-2's topic by someone who holds p-1's key.
        let wire = seal(&finished(), b"secret").expect("seal");
        let err = open::<Event>(&wire, b"secret", &printer("p-2")).expect_err("must fail");
        assert!(matches!(err, DecodeError::PrinterMismatch { .. }), "{err}");
    }

    #[test]
    fn unknown_kind_and_wrong_channel_are_refused() {
        let cmd = Envelope::new(printer("p-1"), Command::EmergencyStop {}).with_command_id("c1");
        let wire = seal(&cmd, b"k").expect("seal");
        let err = open::<Event>(&wire, b"k", &printer("p-1")).expect_err("a command is no event");
        assert!(
            matches!(err, DecodeError::UnknownKind(ref k) if k == "emergency_stop"),
            "{err}"
        );
    }

    #[test]
    fn oversized_and_unframed_payloads_are_refused() {
        let big = vec![b'x'; MAX_PAYLOAD_BYTES + 1];
        assert!(matches!(
            open::<Event>(&big, b"k", &printer("p")),
            Err(DecodeError::TooLarge(_))
        ));
        assert!(matches!(
            open::<Event>(b"{}", b"k", &printer("p")),
            Err(DecodeError::BadFraming)
        ));
        let huge = Envelope::new(
            printer("p"),
            Command::RawGcode {
                lines: vec!["G1 X1".repeat(20_000)],
            },
        );
        assert!(matches!(seal(&huge, b"k"), Err(EncodeError::TooLarge(_))));
    }

    #[test]
    fn malformed_json_with_a_valid_mac_is_malformed_not_a_panic() {
        let json = br#"{"v":1,"printer":"p","kind":"job_started","seq":1,"body":{"job_id":5}}"#;
        let mut wire = json.to_vec();
        wire.push(b'\n');
        wire.extend_from_slice(hex::encode(mac(b"k", json).finalize().into_bytes()).as_bytes());
        let err = open::<Event>(&wire, b"k", &printer("p")).expect_err("must fail");
        assert!(matches!(err, DecodeError::Malformed(_)), "{err}");
    }

    #[test]
    fn events_need_a_seq_and_commands_an_id() {
        let wire = seal(&finished().with_seq(0), b"k").expect("seal");
        assert!(matches!(
            open::<Event>(&wire, b"k", &printer("p-1")),
            Err(DecodeError::MissingField)
        ));
        let mut no_seq = finished();
        no_seq.seq = None;
        let wire = seal(&no_seq, b"k").expect("seal");
        assert!(matches!(
            open::<Event>(&wire, b"k", &printer("p-1")),
            Err(DecodeError::MissingField)
        ));
        let cmd = Envelope::new(printer("p-1"), Command::EmergencyStop {});
        let wire = seal(&cmd, b"k").expect("seal");
        assert!(matches!(
            open::<Command>(&wire, b"k", &printer("p-1")),
            Err(DecodeError::MissingField)
        ));
    }

    #[test]
    fn a_nan_temperature_does_not_lose_the_status() {
        use crate::messages::{Activity, AgentHealth, Heater, Status, StatusMessage};
        let st = StatusMessage::Status(Status {
            state: Activity::Idle,
            temps: vec![Heater {
                name: "tool0".into(),
                actual: f64::NAN,
                target: 0.0,
            }],
            job: None,
            message: None,
            agent: AgentHealth {
                version: "v".into(),
                backend: "sim".into(),
                uptime_s: 1,
                outbox_pending: 0,
            },
            interval_ms: 1000,
            trays: vec![],
        });
        let wire = seal(&Envelope::new(printer("p"), st), b"k").expect("seal");
        let back: Envelope<StatusMessage> = open(&wire, b"k", &printer("p")).expect("open");
        let StatusMessage::Status(s) = back.body;
        assert!(s.temps[0].actual.is_nan());
    }

    /// A payload signed with `key` exactly as written.
    fn signed(json: &[u8], key: &[u8]) -> Vec<u8> {
        let mut wire = json.to_vec();
        wire.push(b'\n');
        wire.extend_from_slice(hex::encode(mac(key, json).finalize().into_bytes()).as_bytes());
        wire
    }

    #[test]
    fn trays_are_optional_and_checked_after_the_signature_like_every_body_field() {
        use crate::messages::{StatusMessage, Tray};
        let head = r#"{"v":1,"printer":"p","ts":"2026-03-14T09:26:53Z","kind":"status","body":{"state":"idle","temps":[],"agent":{"version":"v","backend":"bambu","uptime_s":1,"outbox_pending":0},"interval_ms":1000"#;
        // An older agent's status (no trays) still opens.
        let old = signed(format!("{head}}}}}").as_bytes(), b"k");
        let StatusMessage::Status(s) = open::<StatusMessage>(&old, b"k", &printer("p"))
            .expect("old status")
            .body;
        assert!(s.trays.is_empty());
        let with = format!(
            r##"{head},"trays":[{{"slot":1,"material":"PETG","colour":"#000000","remain_pct":80,"active":true}},{{"slot":2}}]}}}}"##
        );
        let StatusMessage::Status(s) =
            open::<StatusMessage>(&signed(with.as_bytes(), b"k"), b"k", &printer("p"))
                .expect("trays")
                .body;
        assert_eq!(
            s.trays[1],
            Tray {
                slot: 2,
                material: None,
                colour: None,
                remain_pct: None,
                preset: None,
                active: false
            }
        );
        assert_eq!(s.trays[0].remain_pct, Some(80));
        assert!(s.trays[0].active);
        // A bad tray is `malformed` (check 9), but only once the signature holds (check 3).
        let bad = format!(r#"{head},"trays":[{{"slot":"one"}}]}}}}"#);
        assert!(matches!(
            open::<StatusMessage>(&signed(bad.as_bytes(), b"k"), b"k", &printer("p")),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            open::<StatusMessage>(&signed(bad.as_bytes(), b"other"), b"k", &printer("p")),
            Err(DecodeError::BadSignature)
        ));
        // Written back out, an empty list is left out: older readers see what they know.
        let st = StatusMessage::Status(Status { trays: vec![], ..s });
        let json = serde_json::to_string(&st).expect("json");
        assert!(!json.contains("trays"), "{json}");
    }
}
