//! A simulated Bambu Lab printer in LAN mode, for the Bambu back end's tests.
//!
//! **This is a simulation of a device we cannot run here**, built from the protocol notes
//! (OpenBambuAPI, ha-bambulab pybambu) and the real reports captured by ha-bambulab
//! (`tests/data/bambu/`). Like the real printer it runs its own MQTT 3.1.1 broker over TLS,
//! with a certificate whose subject CN is its serial (issued by a CA made here with rcgen, as
//! Bambu's own CA issues the real ones), takes `bblp` + the access code, answers on
//! `device/<serial>/report`, and serves FTPS with implicit TLS (only the commands an upload
//! uses: USER, PASS, PBSZ, PROT, TYPE, PASV, STOR, SIZE, QUIT).
//!
//! Reports start from the P1P's real full report and evolve through a print as a P1 sends
//! them: partial deltas (`gcode_state`, `mc_percent`, `layer_num`, `mc_remaining_time`,
//! `print_error`, `hms`) — `PREPARE`, `RUNNING` layer by layer (the layers of the uploaded
//! file, counted by its `;LAYER_CHANGE` comments), `PAUSE`, `FINISH`, or `FAILED` with the
//! cancel code after `stop` or with an HMS entry when told to fail. The AMS (the capture's, or
//! trays given in [`SimOptions::ams`]) loads the first tray a `project_file`'s `ams_mapping`
//! names, and the tray feeding loses one per cent of `remain` per layer. With Developer Mode off
//! (`fun` has the signature bit) it refuses control commands with `err_code` 84033543.

use anyhow::{Context, Result, anyhow};
use rumqttc::ConnectReturnCode;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    ConnAck, Packet, PingResp, PubAck, Publish, SubAck, SubscribeReasonCode,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

/// How the simulated printer behaves.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub serial: String,
    pub access_code: String,
    /// Off: `fun` carries the signature bit and control commands are refused.
    pub developer_mode: bool,
    /// Time per layer.
    pub layer_time: Duration,
    /// Fail the print with an HMS error when this layer begins.
    pub fail_at_layer: Option<u32>,
    /// The `ams` object to report instead of the capture's (units, trays, `tray_now`).
    pub ams: Option<Value>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            serial: "01P00A391800263".into(),
            access_code: "12345678".into(),
            developer_mode: true,
            layer_time: Duration::from_millis(300),
            fail_at_layer: None,
            ams: None,
        }
    }
}

/// What the printer knows now (shared by its MQTT, FTPS and print tasks).
struct State {
    opts: SimOptions,
    /// The full `print` object (merged as the printer would report it on `pushall`).
    print: Value,
    files: HashMap<String, Vec<u8>>,
    /// The connected client's outgoing reports.
    client: Option<mpsc::UnboundedSender<Vec<u8>>>,
    /// Layers of the job being printed, and the last one reached.
    layers: u32,
    /// Requests the printer received, in order (`command` names), for assertions.
    pub requests: Vec<Value>,
}

impl State {
    /// Applies a delta to the full state and pushes it, as a P1 does.
    fn push(&mut self, delta: Value) {
        merge(&mut self.print, &delta);
        let mut msg = delta;
        msg["command"] = "push_status".into();
        msg["msg"] = 1.into();
        self.send(json!({ "print": msg }));
    }

    fn send(&self, msg: Value) {
        if let Some(c) = &self.client {
            let _ = c.send(msg.to_string().into_bytes());
        }
    }

    /// The tray feeding now uses filament: its `remain` goes down by one per cent, pushed as
    /// the AMS sends it (the unit and tray by id, only what changed).
    fn use_filament(&mut self) {
        let Some(now) = self.print["ams"]["tray_now"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|n| *n < 128)
        else {
            return;
        };
        let (unit, slot) = ((now / 4).to_string(), (now % 4).to_string());
        let left = self.print["ams"]["ams"]
            .as_array()
            .and_then(|u| u.iter().find(|u| u["id"] == unit.as_str()))
            .and_then(|u| u["tray"].as_array())
            .and_then(|t| t.iter().find(|t| t["id"] == slot.as_str()))
            .and_then(|t| t["remain"].as_i64())
            .filter(|r| *r > 0);
        if let Some(r) = left {
            self.push(
                json!({"ams": {"ams": [{"id": unit, "tray": [{"id": slot, "remain": r - 1}]}]}}),
            );
        }
    }

    fn gcode_state(&self) -> &str {
        self.print["gcode_state"].as_str().unwrap_or("")
    }
}

/// Merges a report delta as the printer's state holds it: objects key by key, lists of objects
/// with an `id` element by element, anything else replaced.
fn merge(into: &mut Value, delta: &Value) {
    match (into, delta) {
        (Value::Object(o), Value::Object(d)) => {
            for (k, v) in d {
                match o.get_mut(k) {
                    Some(old) => merge(old, v),
                    None => {
                        o.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(old), Value::Array(new))
            if !new.is_empty() && new.iter().all(|v| v.get("id").is_some()) =>
        {
            for item in new {
                match old.iter_mut().find(|o| o.get("id") == item.get("id")) {
                    Some(o) => merge(o, item),
                    None => old.push(item.clone()),
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// A running simulated printer.
pub struct SimPrinter {
    pub opts: SimOptions,
    pub mqtt_port: u16,
    pub ftps_port: u16,
    /// The CA that issued the printer's certificate, PEM (the agent's `ca_file`).
    pub ca_pem: String,
    state: Arc<Mutex<State>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for SimPrinter {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Loads a captured report: `file`'s `push_all` (or `pushall`), unwrapped to the `print` body.
pub fn fixture_print(dir: &Path, file: &str) -> Result<Value> {
    let text = std::fs::read_to_string(dir.join(file)).with_context(|| file.to_string())?;
    let v: Value = serde_json::from_str(&text)?;
    let p = v
        .get("push_all")
        .or(v.get("pushall"))
        .ok_or_else(|| anyhow!("{file}: no push_all"))?;
    Ok(p.get("print").unwrap_or(p).clone())
}

impl SimPrinter {
    /// Starts the printer on two loopback ports, its report state from `initial` (a real
    /// full report, see [`fixture_print`]).
    pub async fn start(opts: SimOptions, mut initial: Value) -> Result<SimPrinter> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "Simulated BBL CA");
        let ca_cert = ca.self_signed(&ca_key)?;
        let leaf_key = rcgen::KeyPair::generate()?;
        // Like the real one: the serial as CN, no subject alt name.
        let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new())?;
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, opts.serial.clone());
        let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf_cert.der().clone(), ca_cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )?;
        let acceptor = TlsAcceptor::from(Arc::new(server));

        let fun = if opts.developer_mode {
            "3EC18FFF9CFF"
        } else {
            "3EC1AFFF9CFF"
        };
        initial["fun"] = fun.into();
        initial["gcode_state"] = "IDLE".into();
        initial["print_error"] = 0.into();
        initial["hms"] = json!([]);
        if let Some(ams) = &opts.ams {
            initial["ams"] = ams.clone();
        }
        let state = Arc::new(Mutex::new(State {
            opts: opts.clone(),
            print: initial,
            files: HashMap::new(),
            client: None,
            layers: 0,
            requests: vec![],
        }));
        let mqtt = TcpListener::bind("127.0.0.1:0").await?;
        let ftps = TcpListener::bind("127.0.0.1:0").await?;
        let (mqtt_port, ftps_port) = (mqtt.local_addr()?.port(), ftps.local_addr()?.port());
        let tasks = vec![
            tokio::spawn(serve_mqtt(mqtt, acceptor.clone(), state.clone())),
            tokio::spawn(serve_ftps(ftps, acceptor, state.clone())),
        ];
        Ok(SimPrinter {
            opts,
            mqtt_port,
            ftps_port,
            ca_pem: ca_cert.pem(),
            state,
            tasks,
        })
    }

    /// The agent's `[printer.bambu]` settings for this printer, trusting its CA from `ca_file`
    /// (where this writes [`SimPrinter::ca_pem`]).
    pub fn agent_settings(&self, ca_file: &Path) -> Result<String> {
        std::fs::write(ca_file, &self.ca_pem)?;
        Ok(format!(
            "host = \"127.0.0.1\"\nserial = {:?}\naccess_code = {:?}\nca_file = {:?}\nmqtt_port = {}\nftps_port = {}",
            self.opts.serial,
            self.opts.access_code,
            ca_file.display().to_string(),
            self.mqtt_port,
            self.ftps_port
        ))
    }

    /// Files uploaded over FTPS, by path.
    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        self.state.lock().ok()?.files.get(path).cloned()
    }

    /// The requests received so far, as sent.
    pub fn requests(&self) -> Vec<Value> {
        self.state
            .lock()
            .map(|s| s.requests.clone())
            .unwrap_or_default()
    }

    /// The `command`s of the requests received so far.
    pub fn commands(&self) -> Vec<String> {
        self.state
            .lock()
            .map(|s| {
                s.requests
                    .iter()
                    .filter_map(|r| {
                        r.as_object()?
                            .values()
                            .next()?
                            .get("command")?
                            .as_str()
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Files uploaded so far.
    pub fn file_count(&self) -> usize {
        self.state.lock().map(|s| s.files.len()).unwrap_or(0)
    }

    /// The printer's own change (its screen, a sensor): pushed as a delta.
    pub fn push(&self, delta: Value) {
        if let Ok(mut s) = self.state.lock() {
            s.push(delta);
        }
    }
}

async fn serve_mqtt(l: TcpListener, tls: TlsAcceptor, state: Arc<Mutex<State>>) {
    while let Ok((tcp, _)) = l.accept().await {
        let Ok(stream) = tls.accept(tcp).await else {
            continue;
        };
        let _ = mqtt_session(stream, state.clone()).await;
    }
}

async fn mqtt_session<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    state: Arc<Mutex<State>>,
) -> Result<()> {
    let mut buf = bytes::BytesMut::new();
    let mut out = bytes::BytesMut::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let (serial, code) = {
        let s = state.lock().map_err(|_| anyhow!("poisoned"))?;
        (s.opts.serial.clone(), s.opts.access_code.clone())
    };
    let report = format!("device/{serial}/report");
    let request = format!("device/{serial}/request");
    loop {
        // Packets already buffered first, then the socket or a report to send.
        match Packet::read(&mut buf, 1 << 20) {
            Ok(p) => {
                match p {
                    Packet::Connect(c) => {
                        let ok = c
                            .login
                            .is_some_and(|l| l.username == "bblp" && l.password == code);
                        let rc = if ok {
                            ConnectReturnCode::Success
                        } else {
                            ConnectReturnCode::BadUserNamePassword
                        };
                        ConnAck::new(rc, false).write(&mut out)?;
                        s.write_all(&out.split()).await?;
                        if !ok {
                            return Ok(());
                        }
                    }
                    Packet::Subscribe(sub) => {
                        let codes = sub
                            .filters
                            .iter()
                            .map(|f| {
                                if f.path == report
                                    && let Ok(mut st) = state.lock()
                                {
                                    st.client = Some(tx.clone());
                                }
                                SubscribeReasonCode::Success(QoS::AtMostOnce)
                            })
                            .collect();
                        SubAck::new(sub.pkid, codes).write(&mut out)?;
                    }
                    Packet::Publish(p) => {
                        if p.qos != QoS::AtMostOnce {
                            PubAck::new(p.pkid).write(&mut out)?;
                        }
                        if p.topic == request
                            && let Ok(v) = serde_json::from_slice::<Value>(&p.payload)
                        {
                            on_request(&state, v);
                        }
                    }
                    Packet::PingReq => {
                        PingResp.write(&mut out)?;
                    }
                    Packet::Disconnect => return Ok(()),
                    _ => {}
                }
                if !out.is_empty() {
                    s.write_all(&out.split()).await?;
                }
                continue;
            }
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => return Err(anyhow!("bad packet: {e:?}")),
        }
        let mut chunk = [0u8; 8192];
        tokio::select! {
            n = s.read(&mut chunk) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Some(msg) = rx.recv() => {
                Publish::new(report.clone(), QoS::AtMostOnce, msg).write(&mut out)?;
                s.write_all(&out.split()).await?;
            }
        }
    }
}

fn reply(state: &mut State, body: &Value, refused: bool) {
    let mut r = json!({
        "command": body["command"],
        "sequence_id": body["sequence_id"],
        "result": if refused { "failed" } else { "success" },
        "reason": "",
    });
    if refused {
        r["err_code"] = 84_033_543u64.into();
    }
    state.send(json!({ "print": r }));
}

fn on_request(state: &Arc<Mutex<State>>, v: Value) {
    let Ok(mut s) = state.lock() else { return };
    s.requests.push(v.clone());
    if v["pushing"]["command"] == "pushall" {
        let mut full = s.print.clone();
        full["command"] = "push_status".into();
        full["msg"] = 0.into();
        s.send(json!({ "print": full }));
        return;
    }
    if v["info"]["command"] == "get_version" {
        s.send(json!({"info": {"command": "get_version", "sequence_id": v["info"]["sequence_id"],
            "module": [{"name": "ota", "sw_ver": "01.08.02.00", "hw_ver": "", "sn": s.opts.serial}]}}));
        return;
    }
    let body = &v["print"];
    let Some(command) = body["command"].as_str() else {
        return;
    };
    if !s.opts.developer_mode {
        reply(&mut s, body, true);
        return;
    }
    match command {
        "project_file" | "gcode_file" => {
            let path = if command == "gcode_file" {
                body["param"].as_str().unwrap_or("").to_string()
            } else {
                let url = body["url"].as_str().unwrap_or("");
                format!(
                    "/{}",
                    url.trim_start_matches("file:///sdcard/")
                        .trim_start_matches("ftp:///")
                )
            };
            let Some(file) = s.files.get(&path) else {
                reply(&mut s, body, true);
                return;
            };
            // A project prints the plate `param` names, read from the archive as the printer does.
            let file = if command == "project_file" {
                match plate_gcode(file, body["param"].as_str().unwrap_or("")) {
                    Some(g) => g,
                    None => {
                        reply(&mut s, body, true);
                        return;
                    }
                }
            } else {
                file.clone()
            };
            let layers = file
                .split(|b| *b == b'\n')
                .filter(|l| l.starts_with(b";LAYER_CHANGE"))
                .count() as u32;
            s.layers = layers.max(1);
            reply(&mut s, body, false);
            // The AMS loads the first mapped tray.
            if let Some(t) = body["ams_mapping"]
                .as_array()
                .and_then(|m| m.iter().filter_map(Value::as_i64).find(|t| *t >= 0))
            {
                s.push(json!({"ams": {"tray_now": t.to_string()}}));
            }
            let name = path.rsplit('/').next().unwrap_or("").to_string();
            let total = s.layers;
            s.push(
                json!({"gcode_state": "PREPARE", "subtask_name": name, "gcode_file": path,
                "mc_percent": 0, "layer_num": 0, "total_layer_num": total, "print_error": 0}),
            );
            tokio::spawn(run_print(state.clone()));
        }
        "pause" if s.gcode_state() == "RUNNING" => {
            reply(&mut s, body, false);
            s.push(json!({"gcode_state": "PAUSE"}));
        }
        "resume" if s.gcode_state() == "PAUSE" => {
            reply(&mut s, body, false);
            s.push(json!({"gcode_state": "RUNNING"}));
        }
        "stop" => {
            reply(&mut s, body, false);
            if matches!(s.gcode_state(), "RUNNING" | "PAUSE" | "PREPARE") {
                s.push(json!({"gcode_state": "FAILED", "print_error": 50_348_044}));
            }
        }
        _ => reply(&mut s, body, false),
    }
}

/// The print itself: one layer per `layer_time` while running.
async fn run_print(state: Arc<Mutex<State>>) {
    let pace = match state.lock() {
        Ok(s) => s.opts.layer_time,
        Err(_) => return,
    };
    let mut layer = 0;
    loop {
        tokio::time::sleep(pace).await;
        let Ok(mut s) = state.lock() else { return };
        match s.gcode_state() {
            "PREPARE" => s.push(json!({"gcode_state": "RUNNING", "layer_num": 1, "mc_percent": 0})),
            "RUNNING" if layer < s.layers => {
                layer += 1;
                if s.opts.fail_at_layer == Some(layer) {
                    // A motion-control fault: fatal HMS entry, the job fails.
                    s.push(
                        json!({"gcode_state": "FAILED", "print_error": 0x0300_8001u32,
                        "hms": [{"attr": 0x0300_0100u32, "code": 0x0001_0007u32}]}),
                    );
                    return;
                }
                let total = s.layers;
                let left = (total - layer) as u64;
                s.push(
                    json!({"layer_num": layer, "mc_percent": (layer - 1) * 100 / total,
                    "mc_remaining_time": left}),
                );
                s.use_filament();
            }
            "RUNNING" => {
                s.push(json!({"gcode_state": "FINISH", "mc_percent": 100, "mc_remaining_time": 0}));
                return;
            }
            "PAUSE" => {}
            _ => return,
        }
    }
}

async fn serve_ftps(l: TcpListener, tls: TlsAcceptor, state: Arc<Mutex<State>>) {
    while let Ok((tcp, _)) = l.accept().await {
        let (tls, state) = (tls.clone(), state.clone());
        tokio::spawn(async move {
            if let Ok(s) = tls.accept(tcp).await {
                let _ = ftp_session(s, &tls, state).await;
            }
        });
    }
}

async fn ftp_session<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    tls: &TlsAcceptor,
    state: Arc<Mutex<State>>,
) -> Result<()> {
    let code = state
        .lock()
        .map_err(|_| anyhow!("poisoned"))?
        .opts
        .access_code
        .clone();
    let mut c = BufReader::new(s);
    c.get_mut()
        .write_all(b"220 Simulated Bambu FTPS\r\n")
        .await?;
    let mut passive: Option<TcpListener> = None;
    let mut logged_in = false;
    let mut line = String::new();
    loop {
        line.clear();
        if c.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let (cmd, arg) = line
            .trim_end()
            .split_once(' ')
            .unwrap_or((line.trim_end(), ""));
        let answer = match cmd {
            "USER" => "331 password please".to_string(),
            "PASS" if arg == code => {
                logged_in = true;
                "230 logged in".into()
            }
            "PASS" => "530 login incorrect".into(),
            _ if !logged_in => "530 log in first".into(),
            "PBSZ" | "PROT" | "TYPE" => "200 ok".into(),
            "PASV" => {
                let l = TcpListener::bind("127.0.0.1:0").await?;
                let p = l.local_addr()?.port();
                passive = Some(l);
                format!(
                    "227 Entering Passive Mode (127,0,0,1,{},{})",
                    p / 256,
                    p % 256
                )
            }
            "STOR" => {
                let Some(l) = passive.take() else {
                    c.get_mut().write_all(b"425 use PASV first\r\n").await?;
                    continue;
                };
                c.get_mut().write_all(b"150 ok to send data\r\n").await?;
                let (tcp, _) = l.accept().await?;
                let mut data = tls.accept(tcp).await?;
                let mut bytes = vec![];
                // A client that skips close_notify (pybambu does) ends with an EOF error.
                let _ = data.read_to_end(&mut bytes).await;
                if let Ok(mut st) = state.lock() {
                    st.files.insert(arg.to_string(), bytes);
                }
                "226 transfer complete".into()
            }
            "SIZE" => match state
                .lock()
                .ok()
                .and_then(|s| s.files.get(arg).map(Vec::len))
            {
                Some(n) => format!("213 {n}"),
                None => "550 no such file".into(),
            },
            "QUIT" => {
                c.get_mut().write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => "502 not implemented".into(),
        };
        c.get_mut()
            .write_all(format!("{answer}\r\n").as_bytes())
            .await?;
    }
}

/// The G-code of `Metadata/plate_<N>.gcode` (`param`) in a `.gcode.3mf`; `None` if it has none.
fn plate_gcode(archive: &[u8], param: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let n = param
        .strip_prefix("Metadata/plate_")?
        .strip_suffix(".gcode")?
        .parse()
        .ok()?;
    let mut zip = farm_protocol::threemf::ThreeMf::open(std::io::Cursor::new(archive)).ok()?;
    let mut out = vec![];
    zip.plate(n).ok()?.read_to_end(&mut out).ok()?;
    Some(out)
}
