//! Printers: what is stored about each, what is live, and the state the farm shows (DESIGN §5).
//!
//! The farm's printer state is derived, never stored: it follows from presence (`online`),
//! the agent's reported activity, and two operator facts kept in the store (bed not yet
//! cleared, maintenance). [`derive_state`] is that rule, in one place.

use farm_protocol::messages::{Activity, Status};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrinterState {
    Offline,
    Idle,
    Busy,
    Paused,
    Error,
    AwaitingClear,
    Maintenance,
}

impl PrinterState {
    pub const ALL: [PrinterState; 7] = [
        PrinterState::Offline,
        PrinterState::Idle,
        PrinterState::Busy,
        PrinterState::Paused,
        PrinterState::Error,
        PrinterState::AwaitingClear,
        PrinterState::Maintenance,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PrinterState::Offline => "offline",
            PrinterState::Idle => "idle",
            PrinterState::Busy => "busy",
            PrinterState::Paused => "paused",
            PrinterState::Error => "error",
            PrinterState::AwaitingClear => "awaiting_clear",
            PrinterState::Maintenance => "maintenance",
        }
    }
}

/// What the store keeps about a printer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PrinterRecord {
    pub id: String,
    pub name: String,
    /// HMAC key for this printer's messages (the UTF-8 bytes of this string).
    pub secret: String,
    /// sha256 (hex) of the printer's token: its broker password and HTTP bearer token.
    pub token_sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The printer clears its own bed (belt printer, auto-eject); it never waits for an operator.
    #[serde(default)]
    pub auto_eject: bool,
    /// A job ended with something on the bed; no new job until an operator confirms it is clear.
    #[serde(default)]
    pub awaiting_clear: bool,
    #[serde(default)]
    pub maintenance: bool,
    /// The job assigned to or running on this printer.
    #[serde(default)]
    pub current_job: Option<String>,
    /// Registry facts an operator declares (the scheduler's hard constraints read them).
    #[serde(default)]
    pub model: Option<String>,
    /// Printable X, Y, Z, mm. `None`: unknown, no size check.
    #[serde(default)]
    pub build_volume_mm: Option<[f64; 3]>,
    /// One entry per tool (extruder): nozzle and what the operator declared loaded.
    #[serde(default)]
    pub tools: Vec<ToolSlot>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub location: Option<String>,
    /// Typical draw while printing, W (for power planning and costing).
    #[serde(default)]
    pub power_w: Option<f64>,
}

/// One tool of a printer as the operator declared it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolSlot {
    #[serde(default)]
    pub nozzle_mm: Option<f64>,
    #[serde(default)]
    pub material: Option<String>,
    #[serde(default)]
    pub colour: Option<String>,
}

impl PrinterRecord {
    /// A newly enrolled printer: nothing declared yet.
    pub fn new(
        id: String,
        name: String,
        secret: String,
        token_sha256: String,
        created_at: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            name,
            secret,
            token_sha256,
            created_at,
            auto_eject: false,
            awaiting_clear: false,
            maintenance: false,
            current_job: None,
            model: None,
            build_volume_mm: None,
            tools: vec![],
            tags: vec![],
            location: None,
            power_w: None,
        }
    }
}

/// What is known of a printer from the wire since the controller started (not stored).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    pub online: bool,
    pub status: Option<Status>,
    pub last_seen: Option<OffsetDateTime>,
    /// The firmware's latest messages, oldest first, at most [`FIRMWARE_NOTES_KEPT`].
    pub notes: std::collections::VecDeque<FirmwareNote>,
    /// Presence changes held back from the log.
    pub presence_log: PresenceLog,
}

/// A printer's presence is logged at most this often; the changes between are counted.
pub const PRESENCE_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The rule that keeps a flapping printer from flooding the log: its first presence change is
/// logged, then at most one line per [`PRESENCE_LOG_EVERY`], saying how many changes it stands
/// for. A fixed size per enrolled printer, so it cannot grow.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PresenceLog {
    last_line: Option<std::time::Instant>,
    held: u32,
}

/// A presence line to write: how many changes it reports, and since the previous line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PresenceLine {
    pub changes: u32,
    pub since_last: Option<std::time::Duration>,
}

impl PresenceLog {
    /// A presence change at `now`: the line to write, if one is due.
    pub fn change(&mut self, now: std::time::Instant) -> Option<PresenceLine> {
        self.held = self.held.saturating_add(1);
        self.due(now)
    }

    /// Changes held back for [`PRESENCE_LOG_EVERY`]: the line that reports them (with the
    /// state as it is now), so the log ends on the truth once a printer stops flapping.
    pub fn flush(&mut self, now: std::time::Instant) -> Option<PresenceLine> {
        if self.held == 0 {
            return None;
        }
        self.due(now)
    }

    fn due(&mut self, now: std::time::Instant) -> Option<PresenceLine> {
        let since_last = self.last_line.map(|t| now.saturating_duration_since(t));
        if since_last.is_some_and(|d| d < PRESENCE_LOG_EVERY) {
            return None;
        }
        let line = PresenceLine {
            changes: self.held,
            since_last,
        };
        self.last_line = Some(now);
        self.held = 0;
        Some(line)
    }
}

/// How many firmware messages a printer view keeps.
pub const FIRMWARE_NOTES_KEPT: usize = 5;

/// Something the firmware or its host said for an operator to read (a host-action
/// notification, an `M600` prompt and its choices, Klipper's `RESPOND`), as the agent sent it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FirmwareNote {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub text: String,
}

impl Live {
    /// Keeps a firmware message, dropping the oldest beyond [`FIRMWARE_NOTES_KEPT`].
    pub fn note(&mut self, at: OffsetDateTime, text: &str) {
        if self.notes.len() == FIRMWARE_NOTES_KEPT {
            self.notes.pop_front();
        }
        self.notes.push_back(FirmwareNote {
            at,
            text: text.to_string(),
        });
    }
}

/// The one rule for a printer's farm state.
pub fn derive_state(rec: &PrinterRecord, live: &Live) -> PrinterState {
    if rec.maintenance {
        return PrinterState::Maintenance;
    }
    if !live.online {
        return PrinterState::Offline;
    }
    let activity = live.status.as_ref().map(|s| s.state);
    match activity {
        Some(Activity::Error) => PrinterState::Error,
        Some(Activity::Disconnected) => PrinterState::Offline,
        Some(Activity::Paused) => PrinterState::Paused,
        Some(Activity::Printing | Activity::Transferring) => PrinterState::Busy,
        // Assigned but not yet picked up: busy, so nothing else is placed there.
        _ if rec.current_job.is_some() => PrinterState::Busy,
        _ if rec.awaiting_clear => PrinterState::AwaitingClear,
        Some(Activity::Idle) => PrinterState::Idle,
        // Online but no status yet: do not place work on it.
        None => PrinterState::Offline,
    }
}

/// The printer as the API and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PrinterView {
    pub id: String,
    pub name: String,
    pub state: PrinterState,
    pub online: bool,
    /// What the agent reports: `idle`, `transferring`, `printing`, `paused`, `error`, `disconnected`.
    #[schema(value_type = Option<String>)]
    pub activity: Option<Activity>,
    /// Heaters: `{name, actual, target}` (°C).
    #[schema(value_type = Vec<Object>)]
    pub temps: Vec<farm_protocol::messages::Heater>,
    /// The job as the agent sees it: `{job_id, progress, file_pos, file_size, layer, layer_count, elapsed_s, eta_s, extruded_mm}`.
    #[schema(value_type = Option<Object>)]
    pub job: Option<farm_protocol::messages::JobProgress>,
    pub current_job_id: Option<String>,
    pub message: Option<String>,
    /// What the firmware said lately (notifications, prompts), oldest first; the last
    /// five since the controller started.
    pub firmware_messages: Vec<FirmwareNote>,
    pub auto_eject: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
    /// Agent health: version, back end, uptime, outbox depth.
    #[schema(value_type = Option<Object>)]
    pub agent: Option<farm_protocol::messages::AgentHealth>,
    pub maintenance: bool,
    pub model: Option<String>,
    pub build_volume_mm: Option<[f64; 3]>,
    pub tools: Vec<ToolSlot>,
    /// A filament changer's slots as the printer reports them (Bambu's AMS and external
    /// spool): `{slot, material, colour, remain_pct, preset, active}`; empty slots have no
    /// material. `remain_pct` is the printer's coarse estimate, shown, never billed.
    #[schema(value_type = Vec<Object>)]
    pub trays: Vec<farm_protocol::messages::Tray>,
    pub tags: Vec<String>,
    pub location: Option<String>,
    pub power_w: Option<f64>,
}

pub fn view(rec: &PrinterRecord, live: &Live) -> PrinterView {
    let status = live.status.as_ref();
    PrinterView {
        id: rec.id.clone(),
        name: rec.name.clone(),
        state: derive_state(rec, live),
        online: live.online,
        activity: status.map(|s| s.state),
        temps: status.map(|s| s.temps.clone()).unwrap_or_default(),
        job: status.and_then(|s| s.job.clone()),
        current_job_id: rec.current_job.clone(),
        message: status.and_then(|s| s.message.clone()),
        firmware_messages: live.notes.iter().cloned().collect(),
        auto_eject: rec.auto_eject,
        last_seen: live.last_seen,
        agent: status.map(|s| s.agent.clone()),
        maintenance: rec.maintenance,
        model: rec.model.clone(),
        build_volume_mm: rec.build_volume_mm,
        tools: rec.tools.clone(),
        trays: status.map(|s| s.trays.clone()).unwrap_or_default(),
        tags: rec.tags.clone(),
        location: rec.location.clone(),
        power_w: rec.power_w,
    }
}

/// The fields of `new` that differ from `old`, plus `id`: what the live stream sends, as
/// JSON text, rendered once here however many dashboards read it. `None` when nothing changed.
///
/// Compared field by field on the typed views, and only changed fields are serialised: this
/// runs for every status of every printer (5,000 a second on a big floor), and most fields
/// never change between two statuses.
pub fn diff(old: Option<&PrinterView>, new: &PrinterView) -> Option<String> {
    let Some(old) = old else {
        return serde_json::to_string(new).ok();
    };
    fn put(out: &mut Vec<u8>, name: &str, v: &impl Serialize) {
        out.push(if out.is_empty() { b'{' } else { b',' });
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        // Plain data into a Vec: cannot fail (a non-finite float is written as null).
        let _ = serde_json::to_writer(&mut *out, v);
    }
    /// `last_seen` as the view serialises it.
    #[derive(Serialize)]
    struct Rfc3339(#[serde(with = "time::serde::rfc3339::option")] Option<OffsetDateTime>);
    // Destructured, so a field added to the view fails to compile here until it is diffed.
    let PrinterView {
        id,
        name,
        state,
        online,
        activity,
        temps,
        job,
        current_job_id,
        message,
        firmware_messages,
        auto_eject,
        last_seen,
        agent,
        maintenance,
        model,
        build_volume_mm,
        tools,
        trays,
        tags,
        location,
        power_w,
    } = new;
    let mut out = Vec::with_capacity(256);
    macro_rules! changed {
        ($($f:ident),*) => {$(
            if old.$f != *$f {
                put(&mut out, stringify!($f), $f);
            }
        )*};
    }
    changed!(name, state, online, activity);
    // NaN (a sensor reading nothing) is `null` on the stream: NaN to NaN is no change.
    let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
    let same_temps =
        old.temps.len() == temps.len()
            && old.temps.iter().zip(temps).all(|(a, b)| {
                a.name == b.name && same(a.actual, b.actual) && same(a.target, b.target)
            });
    if !same_temps {
        put(&mut out, "temps", temps);
    }
    changed!(job, current_job_id, message, firmware_messages, auto_eject);
    if old.last_seen != *last_seen {
        put(&mut out, "last_seen", &Rfc3339(*last_seen));
    }
    changed!(
        agent,
        maintenance,
        model,
        build_volume_mm,
        tools,
        trays,
        tags,
        location,
        power_w
    );
    if out.is_empty() {
        return None;
    }
    put(&mut out, "id", id);
    out.push(b'}');
    String::from_utf8(out).ok()
}

#[cfg(test)]
pub(crate) fn sample(id: &str) -> PrinterRecord {
    PrinterRecord::new(
        id.into(),
        id.into(),
        "s".into(),
        String::new(),
        OffsetDateTime::UNIX_EPOCH,
    )
}

#[cfg(test)]
pub(crate) fn status(state: Activity) -> Status {
    Status {
        state,
        temps: vec![],
        job: None,
        message: None,
        agent: farm_protocol::messages::AgentHealth {
            version: "t".into(),
            backend: "sim".into(),
            uptime_s: 0,
            outbox_pending: 0,
        },
        interval_ms: 1000,
        trays: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(a: Option<Activity>) -> Live {
        Live {
            online: true,
            status: a.map(status),
            ..Live::default()
        }
    }

    #[test]
    fn state_rule() {
        let mut r = sample("p");
        assert_eq!(derive_state(&r, &Live::default()), PrinterState::Offline);
        assert_eq!(derive_state(&r, &live(None)), PrinterState::Offline);
        assert_eq!(
            derive_state(&r, &live(Some(Activity::Idle))),
            PrinterState::Idle
        );
        assert_eq!(
            derive_state(&r, &live(Some(Activity::Printing))),
            PrinterState::Busy
        );
        assert_eq!(
            derive_state(&r, &live(Some(Activity::Paused))),
            PrinterState::Paused
        );
        assert_eq!(
            derive_state(&r, &live(Some(Activity::Error))),
            PrinterState::Error
        );
        r.awaiting_clear = true;
        assert_eq!(
            derive_state(&r, &live(Some(Activity::Idle))),
            PrinterState::AwaitingClear
        );
        r.current_job = Some("job-1".into());
        assert_eq!(
            derive_state(&r, &live(Some(Activity::Idle))),
            PrinterState::Busy
        );
        r.maintenance = true;
        assert_eq!(
            derive_state(&r, &live(Some(Activity::Printing))),
            PrinterState::Maintenance
        );
    }

    /// The diff the typed one replaced: both views as JSON, keys compared.
    fn json_diff(old: &PrinterView, new: &PrinterView) -> Option<serde_json::Value> {
        let (serde_json::Value::Object(o), serde_json::Value::Object(n)) = (
            serde_json::to_value(old).ok()?,
            serde_json::to_value(new).ok()?,
        ) else {
            return None;
        };
        let mut out: serde_json::Map<_, _> =
            n.into_iter().filter(|(k, v)| o.get(k) != Some(v)).collect();
        if out.is_empty() {
            return None;
        }
        out.insert("id".into(), new.id.clone().into());
        Some(serde_json::Value::Object(out))
    }

    #[test]
    fn the_typed_diff_says_what_the_json_diff_says() {
        use farm_protocol::messages::{Heater, JobProgress};
        let mut r = sample("p");
        let mut l = live(Some(Activity::Idle));
        let mut views = vec![view(&r, &l)];
        l.online = false;
        views.push(view(&r, &l));
        l.online = true;
        l.last_seen = Some(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(90));
        views.push(view(&r, &l));
        let mut s = status(Activity::Printing);
        s.temps = vec![Heater {
            name: "tool0".into(),
            actual: 210.5,
            target: 215.0,
        }];
        s.job = Some(JobProgress {
            job_id: "job-1".into(),
            progress: 0.25,
            file_pos: 100,
            file_size: 400,
            layer: Some(3),
            layer_count: None,
            elapsed_s: 60.0,
            eta_s: Some(180.0),
            extruded_mm: vec![12.5],
        });
        s.message = Some("printing".into());
        l.status = Some(s);
        views.push(view(&r, &l));
        // A sensor that reads nothing is NaN, `null` in JSON: unchanged when it stays so.
        if let Some(s) = l.status.as_mut() {
            s.temps[0].actual = f64::NAN;
        }
        views.push(view(&r, &l));
        r.maintenance = true;
        r.tags = vec!["east".into()];
        r.power_w = Some(120.0);
        r.build_volume_mm = Some([250.0, 210.0, 210.0]);
        r.current_job = Some("job-1".into());
        views.push(view(&r, &l));
        for a in &views {
            for b in &views {
                let typed = diff(Some(a), b).map(|t| {
                    serde_json::from_str::<serde_json::Value>(&t).expect("the diff is JSON")
                });
                assert_eq!(typed, json_diff(a, b), "{a:?} -> {b:?}");
            }
        }
        let whole = diff(None, &views[3]).expect("a new printer is all of it");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&whole).ok(),
            serde_json::to_value(&views[3]).ok()
        );
    }

    #[test]
    fn diff_carries_only_changes_and_the_id() {
        let r = sample("p");
        let a = view(&r, &live(Some(Activity::Idle)));
        let b = view(&r, &live(Some(Activity::Printing)));
        let d: serde_json::Value =
            serde_json::from_str(&diff(Some(&a), &b).expect("a change")).expect("json");
        let keys: Vec<_> = d.as_object().expect("object").keys().cloned().collect();
        assert_eq!(keys.len(), 3, "{d}");
        assert_eq!(d["state"], "busy");
        assert_eq!(d["activity"], "printing");
        assert_eq!(d["id"], "p");
        assert!(diff(Some(&a), &a).is_none());
    }

    /// The typed diff must name every field of the view: one added to `PrinterView` but not
    /// to `diff` would never reach a dashboard after the snapshot.
    #[test]
    fn diff_covers_every_field_of_the_view() {
        let a = view(&sample("p"), &Live::default());
        let mut r = sample("p");
        r.name = "other".into();
        r.auto_eject = true;
        r.maintenance = true;
        r.current_job = Some("job-1".into());
        r.model = Some("mk4".into());
        r.build_volume_mm = Some([1.0, 2.0, 3.0]);
        r.tools = vec![ToolSlot::default()];
        r.tags = vec!["t".into()];
        r.location = Some("here".into());
        r.power_w = Some(1.0);
        let mut l = live(Some(Activity::Printing));
        let s = l.status.as_mut().expect("status");
        s.temps = vec![farm_protocol::messages::Heater {
            name: "bed".into(),
            actual: 60.0,
            target: 60.0,
        }];
        s.message = Some("m".into());
        s.job = Some(farm_protocol::messages::JobProgress {
            job_id: "job-1".into(),
            progress: 0.5,
            file_pos: 1,
            file_size: 2,
            layer: None,
            layer_count: None,
            elapsed_s: 1.0,
            eta_s: None,
            extruded_mm: vec![],
        });
        s.trays = vec![farm_protocol::messages::Tray {
            slot: 0,
            material: None,
            colour: None,
            remain_pct: None,
            preset: None,
            active: false,
        }];
        l.last_seen = Some(OffsetDateTime::UNIX_EPOCH);
        l.note(OffsetDateTime::UNIX_EPOCH, "n");
        let b = view(&r, &l);
        let d: serde_json::Value =
            serde_json::from_str(&diff(Some(&a), &b).expect("a change")).expect("json");
        let whole = serde_json::to_value(&b).expect("view");
        assert_eq!(
            d, whole,
            "every field changed, so the diff is the whole view"
        );
    }

    #[test]
    fn presence_is_logged_once_a_minute_with_the_changes_counted() {
        let t0 = std::time::Instant::now();
        let at = |s: u64| t0 + std::time::Duration::from_secs(s);
        let mut log = PresenceLog::default();
        // The first change is logged at once.
        let first = log.change(at(0)).expect("first line");
        assert_eq!((first.changes, first.since_last), (1, None));
        // A printer flapping every second for a minute: nothing more until 60 s have passed…
        for s in 1..60 {
            assert_eq!(log.change(at(s)), None, "second {s}");
        }
        // …then one line for the 60 changes since the last one.
        let line = log.change(at(60)).expect("a line after a minute");
        assert_eq!(line.changes, 60);
        assert_eq!(line.since_last, Some(std::time::Duration::from_secs(60)));
        // Changes held back are reported by the sweep once due, and only once.
        assert_eq!(log.change(at(61)), None);
        assert_eq!(log.flush(at(100)), None, "not a minute yet");
        let held = log.flush(at(120)).expect("the held change");
        assert_eq!(held.changes, 1);
        assert_eq!(log.flush(at(500)), None, "nothing held");
        // A quiet printer's next change is logged at once again.
        assert_eq!(log.change(at(500)).map(|l| l.changes), Some(1));
        assert_eq!(
            std::mem::size_of::<PresenceLog>(),
            std::mem::size_of_val(&log)
        );
    }

    #[test]
    fn firmware_messages_keep_the_newest_five_oldest_first() {
        let mut l = Live::default();
        for i in 0..7 {
            l.note(OffsetDateTime::UNIX_EPOCH, &format!("m{i}"));
        }
        let v = view(&sample("p"), &l);
        let texts: Vec<&str> = v.firmware_messages.iter().map(|n| &*n.text).collect();
        assert_eq!(texts, ["m2", "m3", "m4", "m5", "m6"]);
    }
}
