//! The agent through its public API (`farm_agent::run`) against a real broker (rmqtt, as
//! the controller embeds), with a test "controller" speaking the v1 contract over rumqttc.
//!
//! Covers: presence and last-will-style `online:false` on shutdown, signed commands (and
//! dropping unsigned ones), seq order, resend when no ack comes, ack → outbox emptied
//! (`outbox_pending` in status), command ids executed once across a restart, and unacked
//! events surviving a restart.

use farm_protocol::messages::{
    AckMessage, Command, Event, JobAssignment, OnlineMessage, Outcome, StatusMessage,
};
use farm_protocol::{Envelope, PrinterId};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

const KEY: &str = "mqtt-test-secret";
const TOKEN: &str = "tok_p1";
const WAIT: Duration = Duration::from_secs(30);

fn id() -> PrinterId {
    PrinterId::new("p-1").expect("id")
}

/// Static logins for the test broker: the printer and the test's controller.
struct Logins;

#[async_trait::async_trait]
impl rmqtt::hook::Handler for Logins {
    async fn hook(
        &self,
        param: &rmqtt::hook::Parameter,
        acc: Option<rmqtt::hook::HookResult>,
    ) -> rmqtt::hook::ReturnType {
        use rmqtt::hook::{HookResult, Parameter};
        use rmqtt::types::AuthResult;
        let Parameter::ClientAuthenticate(info) = param else {
            return (true, acc);
        };
        let user = info.username().map(|u| u.to_string()).unwrap_or_default();
        let pass = info.password().map(|p| p.to_vec()).unwrap_or_default();
        let ok = matches!(
            (user.as_str(), &pass[..]),
            ("p-1", p) if p == TOKEN.as_bytes()
        ) || (user == "ctl" && pass == b"ctl-pass");
        let r = if ok {
            AuthResult::Allow(false, None)
        } else {
            AuthResult::BadUsernameOrPassword
        };
        (false, Some(HookResult::AuthResult(r)))
    }
}

/// A real broker (rmqtt, as the controller embeds) on this test's runtime, with static
/// credentials.
async fn broker() -> u16 {
    use rmqtt::context::ServerContext;
    use rmqtt::hook::Type;
    let scx = ServerContext::new().busy_check_enable(false).build().await;
    let register = scx.extends.hook_mgr().register();
    register
        .add(Type::ClientAuthenticate, Box::new(Logins))
        .await;
    register.start().await;
    let listener = rmqtt::net::Builder::new()
        .name("test")
        .laddr(SocketAddr::from(([127, 0, 0, 1], 0)))
        .nodelay(true)
        .allow_anonymous(false)
        .max_packet_size(256 * 1024)
        .bind()
        .and_then(|l| l.tcp())
        .expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let server = rmqtt::server::MqttServer::new(scx)
        .listener_by_id(listener, 1)
        .build();
    tokio::spawn(server.run());
    port
}

async fn file_server(dir: &Path) -> String {
    let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(dir));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[derive(Debug)]
enum Msg {
    Event(u64, Event),
    Status(farm_protocol::messages::Status),
    Online(bool),
}

/// The test's stand-in for the controller.
struct Ctl {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Msg>,
}

impl Ctl {
    async fn connect(port: u16) -> Ctl {
        let mut o = MqttOptions::new("ctl", "127.0.0.1", port);
        o.set_credentials("ctl", "ctl-pass")
            .set_max_packet_size(128 * 1024, 128 * 1024);
        let (client, mut el) = AsyncClient::new(o, 100);
        for ch in ["events", "status", "online"] {
            client
                .subscribe(format!("farm/v1/printers/p-1/{ch}"), QoS::AtLeastOnce)
                .await
                .expect("subscribe");
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        let key = KEY.as_bytes();
                        let msg = if p.topic.ends_with("/events") {
                            let env: Envelope<Event> =
                                farm_protocol::open(&p.payload, key, &id()).expect("event opens");
                            Msg::Event(env.seq.expect("seq"), env.body)
                        } else if p.topic.ends_with("/status") {
                            let env: Envelope<StatusMessage> =
                                farm_protocol::open(&p.payload, key, &id()).expect("status");
                            let StatusMessage::Status(s) = env.body;
                            Msg::Status(s)
                        } else {
                            let env: Envelope<OnlineMessage> =
                                farm_protocol::open(&p.payload, key, &id()).expect("online");
                            let OnlineMessage::Online { online } = env.body;
                            Msg::Online(online)
                        };
                        if tx.send(msg).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Ctl { client, rx }
    }

    async fn next(&mut self) -> Msg {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("a message in time")
            .expect("controller loop alive")
    }

    /// Skips messages until `f` returns something; events seen are recorded in `log`.
    async fn until<T>(&mut self, log: &mut Log, mut f: impl FnMut(&Msg, &Log) -> Option<T>) -> T {
        loop {
            let m = self.next().await;
            if let Msg::Event(seq, e) = &m {
                log.record(*seq, e.clone());
            }
            if let Some(t) = f(&m, log) {
                return t;
            }
        }
    }

    async fn command(&self, command_id: &str, cmd: Command, key: &str) {
        let env = Envelope::new(id(), cmd).with_command_id(command_id);
        let wire = farm_protocol::seal(&env, key.as_bytes()).expect("seal");
        self.client
            .publish(
                "farm/v1/printers/p-1/commands",
                QoS::AtLeastOnce,
                false,
                wire,
            )
            .await
            .expect("publish");
    }

    async fn ack(&self, applied_seq: u64) {
        let env = Envelope::new(id(), AckMessage::Ack { applied_seq });
        let wire = farm_protocol::seal(&env, KEY.as_bytes()).expect("seal");
        self.client
            .publish("farm/v1/printers/p-1/acks", QoS::AtMostOnce, false, wire)
            .await
            .expect("publish");
    }
}

/// Events by seq, and how many duplicates arrived.
#[derive(Default)]
struct Log {
    events: BTreeMap<u64, Event>,
    duplicates: usize,
}

impl Log {
    fn record(&mut self, seq: u64, e: Event) {
        if let Some(old) = self.events.insert(seq, e.clone()) {
            assert_eq!(old, e, "a resent seq must carry the same event");
            self.duplicates += 1;
        }
    }

    fn max(&self) -> u64 {
        self.events.keys().last().copied().unwrap_or(0)
    }

    fn result(&self, command_id: &str) -> Option<(bool, String)> {
        self.events.values().find_map(|e| match e {
            Event::CommandResult {
                command_id: c,
                ok,
                message,
            } if c == command_id => Some((*ok, message.clone())),
            _ => None,
        })
    }
}

fn agent_config(port: u16, state: &Path) -> farm_agent::Config {
    farm_agent::Config::from_toml_str(&format!(
        r#"
printer_id = "p-1"
secret = "{KEY}"
token = "{TOKEN}"
controller_url = "http://127.0.0.1:1"
broker_url = "mqtt://127.0.0.1:{port}"
state_dir = "{}"
status_interval_ms = 200
[printer]
backend = "sim"
[printer.sim]
speed = 2000.0
heat_rate_c_per_s = 100.0
"#,
        state.display()
    ))
    .expect("config")
}

struct Agent {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), farm_agent::AgentError>>,
}

fn start_agent(port: u16, state: &Path) -> Agent {
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(farm_agent::run(agent_config(port, state), rx));
    Agent { stop, task }
}

impl Agent {
    async fn stop(self) {
        self.stop.send_replace(true);
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("agent stops in time")
            .expect("join")
            .expect("agent ran cleanly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_speaks_the_v1_contract_over_a_real_broker() {
    let port = broker().await;
    let state = tempfile::tempdir().expect("tmp");
    let files = tempfile::tempdir().expect("tmp");
    let base = file_server(files.path()).await;
    let mut ctl = Ctl::connect(port).await;
    let mut log = Log::default();

    // --- run 1: presence, a job end to end, resend without ack, ack, bad signatures.
    let agent = start_agent(port, state.path());
    ctl.until(&mut log, |m, _| {
        matches!(m, Msg::Online(true)).then_some(())
    })
    .await;
    ctl.until(&mut log, |_, l| l.events.contains_key(&1).then_some(()))
        .await;
    assert!(matches!(log.events[&1], Event::AgentStarted { ref backend, .. } if backend == "sim"));

    let mut body = String::from("M83\nG1 Z0.2 F600\n");
    for i in 0..200 {
        body.push_str(&format!("G1 X{} Y{} E0.5 F6000\n", i % 50, (i * 7) % 50));
    }
    std::fs::write(files.path().join("job.gcode"), &body).expect("write");
    let total = farm_protocol::gcode::analyze(body.as_bytes())
        .expect("analyze")
        .filament_mm;
    let job = JobAssignment {
        job_id: "j-1".into(),
        name: "job.gcode".into(),
        url: format!("{base}/job.gcode"),
        sha256: hex::encode(Sha256::digest(body.as_bytes())),
        size: body.len() as u64,
        material: None,
        colour: None,
        trays: vec![],
        plate: None,
    };
    ctl.command("c-1", Command::AssignJob(job), KEY).await;
    let extruded = ctl
        .until(&mut log, |m, _| match m {
            Msg::Event(
                _,
                Event::JobFinished {
                    outcome: Outcome::Completed,
                    extruded_mm,
                    ..
                },
            ) => Some(extruded_mm.clone()),
            _ => None,
        })
        .await;
    assert_eq!(extruded, total);
    assert_eq!(log.result("c-1"), Some((true, "accepted job j-1".into())));
    let seqs: Vec<u64> = log.events.keys().copied().collect();
    assert_eq!(seqs, (1..=log.max()).collect::<Vec<_>>(), "no gaps");

    // No ack yet: after a few seconds the agent resends what is pending.
    let before = log.duplicates;
    ctl.until(&mut log, |_, l| (l.duplicates > before).then_some(()))
        .await;
    ctl.ack(log.max()).await;
    ctl.until(&mut log, |m, _| match m {
        Msg::Status(s) if s.agent.outbox_pending == 0 => Some(()),
        _ => None,
    })
    .await;

    // A command signed with the wrong key is dropped; the next good one runs.
    ctl.command(
        "c-bad",
        Command::SetTelemetry { interval_ms: 300 },
        "wrong-key",
    )
    .await;
    ctl.command("c-2", Command::SetTelemetry { interval_ms: 250 }, KEY)
        .await;
    ctl.until(&mut log, |_, l| l.result("c-2").map(|_| ()))
        .await;
    assert_eq!(log.result("c-bad"), None);
    ctl.until(&mut log, |m, _| match m {
        Msg::Status(s) if s.interval_ms == 250 => Some(()),
        _ => None,
    })
    .await;
    let unacked = log.max();
    let dups_before_restart = log.duplicates;

    agent.stop().await;
    ctl.until(&mut log, |m, _| {
        matches!(m, Msg::Online(false)).then_some(())
    })
    .await;

    // --- run 2: the unacked event is resent, seq continues, c-2 is not executed again.
    let agent = start_agent(port, state.path());
    ctl.until(&mut log, |_, l| {
        matches!(
            l.events.get(&(unacked + 1)),
            Some(Event::AgentStarted { .. })
        )
        .then_some(())
    })
    .await;
    ctl.command("c-2", Command::SetTelemetry { interval_ms: 250 }, KEY)
        .await;
    ctl.command("c-3", Command::SetTelemetry { interval_ms: 1000 }, KEY)
        .await;
    ctl.until(&mut log, |_, l| l.result("c-3").map(|_| ()))
        .await;
    let c2_results = log
        .events
        .values()
        .filter(|e| matches!(e, Event::CommandResult { command_id, .. } if command_id == "c-2"))
        .count();
    assert_eq!(c2_results, 1, "a repeated command id is executed once");
    // The event left unacked in run 1 arrived again after the restart (a duplicate).
    assert!(log.duplicates > dups_before_restart);
    ctl.ack(log.max()).await;
    ctl.until(&mut log, |m, _| match m {
        Msg::Status(s) if s.agent.outbox_pending == 0 => Some(()),
        _ => None,
    })
    .await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_events_are_resent_after_a_restart() {
    let port = broker().await;
    let state = tempfile::tempdir().expect("tmp");
    let mut ctl = Ctl::connect(port).await;
    let mut log = Log::default();

    let agent = start_agent(port, state.path());
    ctl.until(&mut log, |_, l| l.events.contains_key(&1).then_some(()))
        .await;
    agent.stop().await;
    let dups = log.duplicates;

    let agent = start_agent(port, state.path());
    // seq 1 comes again (never acked), then the second start as seq 2.
    ctl.until(&mut log, |_, l| {
        (l.duplicates > dups && l.events.contains_key(&2)).then_some(())
    })
    .await;
    assert!(matches!(log.events[&2], Event::AgentStarted { .. }));
    agent.stop().await;
}
