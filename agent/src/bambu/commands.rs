//! Request payloads for `device/<serial>/request` (pure). Shapes from OpenBambuAPI `mqtt.md`
//! and ha-bambulab pybambu `commands.py` (see the reference notes in the README's Bambu
//! section). Every request carries a `sequence_id` the printer echoes in its reply, so a reply
//! is matched to the command that asked.

use serde_json::{Value, json};

/// Hands out `sequence_id`s, as strings (the printer echoes them as sent).
#[derive(Clone, Debug, Default)]
pub struct Sequence(u64);

impl Sequence {
    pub fn take(&mut self) -> String {
        self.0 += 1;
        self.0.to_string()
    }
}

/// A request ready to publish and the id its reply will carry.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub sequence_id: String,
    pub payload: Value,
}

impl Request {
    pub fn bytes(&self) -> Vec<u8> {
        self.payload.to_string().into_bytes()
    }
}

fn request(seq: &mut Sequence, kind: &str, mut body: Value) -> Request {
    let sequence_id = seq.take();
    body["sequence_id"] = Value::String(sequence_id.clone());
    Request {
        sequence_id,
        payload: json!({ kind: body }),
    }
}

/// The full state dump; sent once per connection (more often lags a P1P).
pub fn pushall(seq: &mut Sequence) -> Request {
    request(
        seq,
        "pushing",
        json!({"command": "pushall", "version": 1, "push_target": 1}),
    )
}

/// Firmware and module versions.
pub fn get_version(seq: &mut Sequence) -> Request {
    request(seq, "info", json!({"command": "get_version"}))
}

/// `pause`, `resume` or `stop`.
pub fn print_control(seq: &mut Sequence, command: &str) -> Request {
    request(seq, "print", json!({"command": command, "param": ""}))
}

/// Raw G-code; lines joined with `\n`, ending with one.
pub fn gcode_line(seq: &mut Sequence, lines: &[String]) -> Request {
    let mut param = lines.join("\n");
    param.push('\n');
    request(
        seq,
        "print",
        json!({"command": "gcode_line", "param": param}),
    )
}

/// Where the printer reads uploaded files from in a print request: `file:///sdcard/` on the
/// X1, P1 and A1 series, `ftp:///` on the H2 series and later (ha-bambulab `const.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    Sdcard,
    Ftp,
}

impl Storage {
    pub fn url(self, path: &str) -> String {
        let path = path.trim_start_matches('/');
        match self {
            Storage::Sdcard => format!("file:///sdcard/{path}"),
            Storage::Ftp => format!("ftp:///{path}"),
        }
    }
}

/// Starts plate `plate` (1-based) of an uploaded `.gcode.3mf`. `ams_mapping` holds the
/// absolute tray id per filament of the project, −1 for one the plate does not use (the
/// slicer's form, see `ams.rs`); `use_ams` is on when it names any tray. Both spellings of bed
/// levelling go out: firmware differ.
pub fn project_file(
    seq: &mut Sequence,
    storage: Storage,
    path: &str,
    plate: u32,
    ams_mapping: &[i32],
) -> Request {
    let name = path.rsplit('/').next().unwrap_or(path);
    request(
        seq,
        "print",
        json!({
            "command": "project_file",
            "param": format!("Metadata/plate_{plate}.gcode"),
            "url": storage.url(path),
            "subtask_name": name,
            "bed_type": "auto",
            "timelapse": false,
            "bed_leveling": true,
            "bed_levelling": true,
            "flow_cali": false,
            "vibration_cali": false,
            "layer_inspect": false,
            "use_ams": ams_mapping.iter().any(|t| *t >= 0),
            "ams_mapping": ams_mapping,
            "profile_id": "0",
            "project_id": "0",
            "subtask_id": "0",
            "task_id": "0",
        }),
    )
}

/// Starts a plain `.gcode` file already on the printer's storage (absolute path there).
pub fn gcode_file(seq: &mut Sequence, path: &str) -> Request {
    let path = format!("/{}", path.trim_start_matches('/'));
    request(
        seq,
        "print",
        json!({"command": "gcode_file", "param": path}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_fresh_sequence_ids_and_the_documented_shapes() {
        let mut seq = Sequence::default();
        let p = pushall(&mut seq);
        assert_eq!(p.payload["pushing"]["command"], "pushall");
        assert_eq!(p.payload["pushing"]["sequence_id"], "1");
        let s = print_control(&mut seq, "stop");
        assert_eq!(s.sequence_id, "2");
        assert_eq!(s.payload["print"]["command"], "stop");
        let g = gcode_line(&mut seq, &["M104 S200".into(), "G28".into()]);
        assert_eq!(g.payload["print"]["param"], "M104 S200\nG28\n");
        let j = project_file(
            &mut seq,
            Storage::Sdcard,
            "/cache/job-7.gcode.3mf",
            2,
            &[0, -1, 5],
        );
        let b = &j.payload["print"];
        assert_eq!(b["param"], "Metadata/plate_2.gcode");
        assert_eq!(b["url"], "file:///sdcard/cache/job-7.gcode.3mf");
        assert_eq!(b["ams_mapping"], json!([0, -1, 5]));
        assert_eq!(b["use_ams"], true);
        assert_eq!(b["subtask_name"], "job-7.gcode.3mf");
        assert_eq!(
            project_file(&mut seq, Storage::Ftp, "job.3mf", 1, &[-1]).payload["print"]["url"],
            "ftp:///job.3mf"
        );
        assert_eq!(
            gcode_file(&mut seq, "cache/a.gcode").payload["print"]["param"],
            "/cache/a.gcode"
        );
        assert_eq!(get_version(&mut seq).payload["info"]["sequence_id"], "7");
    }
}
