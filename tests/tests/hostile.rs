//! Forged and malformed input: over MQTT from a client with valid broker credentials, and
//! over HTTP. Each is refused with a clear error or dropped and counted; nothing changes and
//! nothing panics.

use anyhow::{Result, ensure};
use farm_e2e::{Farm, FarmOptions, eventually, mqtt_client, or_logs};
use farm_protocol::messages::{Activity, AgentHealth, Event, Status, StatusMessage};
use farm_protocol::{Channel, Envelope, PrinterId, Topics, seal};
use rumqttc::QoS;
use std::time::Duration;

fn pid(s: &str) -> PrinterId {
    PrinterId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn status() -> StatusMessage {
    StatusMessage::Status(Status {
        state: Activity::Idle,
        temps: vec![],
        job: None,
        message: None,
        agent: AgentHealth {
            version: "test".into(),
            backend: "none".into(),
            uptime_s: 0,
            outbox_pending: 0,
        },
        interval_ms: 1000,
        trays: vec![],
    })
}

/// Waits until a dropped-message counter reaches `n`.
async fn dropped(farm: &Farm, reason: &str, n: f64) -> Result<()> {
    let series = format!("farm_mqtt_dropped_total{{reason=\"{reason}\"}}");
    eventually(&series, Duration::from_secs(15), async || {
        (farm.metric(&series).await.ok()? >= n).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_valid_credentials_cannot_speak_for_another_printer() {
    let mut farm = Farm::start(FarmOptions::default())
        .await
        .expect("controller");
    let r = forgery(&mut farm).await;
    or_logs(r, &farm);
}

async fn forgery(farm: &mut Farm) -> Result<()> {
    farm.enrol("p-1", false, "speed = 1.0").await?;
    farm.enrol("p-2", false, "speed = 1.0").await?;
    let (secret1, token1) = farm.agent_keys("p-1")?;
    let t = Topics::default();
    // p-1's credentials cannot log in under p-2's client id (which would kick p-2 off).
    ensure!(
        mqtt_client(farm.mqtt_port, "p-2", "p-1", &token1)
            .await
            .is_err(),
        "client id must match the login"
    );
    ensure!(
        mqtt_client(farm.mqtt_port, "p-1", "p-1", "wrong-token")
            .await
            .is_err(),
        "a wrong token is refused"
    );
    let c = mqtt_client(farm.mqtt_port, "p-1", "p-1", &token1).await?;

    // 1. An event on p-2's topic, claiming to be p-2, signed with p-1's key.
    let ev = Envelope::new(pid("p-2"), Event::job_started("job-1")).with_seq(1);
    c.publish(
        t.printer(&pid("p-2"), Channel::Events),
        QoS::AtLeastOnce,
        false,
        seal(&ev, secret1.as_bytes())?,
    )
    .await?;
    // 2. A status on p-2's topic signed with p-1's key.
    let st = Envelope::new(pid("p-2"), status());
    c.publish(
        t.printer(&pid("p-2"), Channel::Status),
        QoS::AtLeastOnce,
        false,
        seal(&st, secret1.as_bytes())?,
    )
    .await?;
    // 3. On its own topic, a message that names p-2 inside (valid p-1 signature).
    c.publish(
        t.printer(&pid("p-1"), Channel::Status),
        QoS::AtLeastOnce,
        false,
        seal(&st, secret1.as_bytes())?,
    )
    .await?;
    // 4. A bad signature on its own topic.
    let mut bad = seal(&Envelope::new(pid("p-1"), status()), secret1.as_bytes())?;
    let n = bad.len();
    bad[n - 1] = if bad[n - 1] == b'0' { b'1' } else { b'0' };
    c.publish(
        t.printer(&pid("p-1"), Channel::Status),
        QoS::AtLeastOnce,
        false,
        bad,
    )
    .await?;

    // 1 and 2 never reach the controller: the broker's ACL keeps p-1 to its own topics.
    dropped(farm, "not_authorized", 2.0).await?;
    dropped(farm, "bad_signature", 1.0).await?;
    dropped(farm, "printer_mismatch", 1.0).await?;
    let p2 = farm.get("/api/v1/printers/p-2").await?;
    ensure!(
        p2["online"] == false && p2["last_seen"].is_null() && p2["state"] == "offline",
        "p-2 untouched: {p2}"
    );
    let p1 = farm.get("/api/v1/printers/p-1").await?;
    ensure!(
        p1["last_seen"].is_null(),
        "no forged status was applied to p-1 either: {p1}"
    );
    ensure!(
        farm.metric("farm_events_applied_total").await? == 0.0,
        "no event applied"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_mqtt_and_http_input_is_refused_clearly_and_counted() {
    let mut farm = Farm::start(FarmOptions {
        max_upload_bytes: 1024 * 1024,
        ..FarmOptions::default()
    })
    .await
    .expect("controller");
    let r = bad_input(&mut farm).await;
    or_logs(r, &farm);
}

fn signed(json: &[u8], key: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!());
    m.update(json);
    let mut out = json.to_vec();
    out.push(b'\n');
    out.extend_from_slice(hex::encode(m.finalize().into_bytes()).as_bytes());
    out
}

async fn bad_input(farm: &mut Farm) -> Result<()> {
    farm.enrol("p-1", false, "speed = 1.0").await?;
    let (secret, token) = farm.agent_keys("p-1")?;
    let key = secret.as_bytes();
    let t = Topics::default();
    let c = mqtt_client(farm.mqtt_port, "p-1", "p-1", &token).await?;
    let own = |ch| t.printer(&pid("p-1"), ch);

    c.publish(
        own(Channel::Events),
        QoS::AtLeastOnce,
        false,
        signed(br#"{"v":1,"printer":"p-1","#, key),
    )
    .await?;
    c.publish(own(Channel::Events), QoS::AtLeastOnce, false, signed(br#"{"v":1,"printer":"p-1","ts":"2026-01-01T00:00:00Z","kind":"warp_drive","seq":1,"body":{}}"#, key)).await?;
    c.publish(
        own(Channel::Status),
        QoS::AtLeastOnce,
        false,
        signed(&vec![b' '; 66 * 1024], key),
    )
    .await?;
    c.publish(
        own(Channel::Status),
        QoS::AtLeastOnce,
        false,
        b"not framed at all".to_vec(),
    )
    .await?;
    c.publish(
        own(Channel::Events),
        QoS::AtLeastOnce,
        false,
        signed(
            br#"{"v":9,"printer":"p-1","kind":"job_started","seq":1,"body":{}}"#,
            key,
        ),
    )
    .await?;
    // A printer that is not enrolled cannot log in at all, and p-1 may not publish for it.
    c.publish(
        "farm/v1/printers/ghost/status",
        QoS::AtLeastOnce,
        false,
        b"x".to_vec(),
    )
    .await?;
    for reason in [
        "malformed",
        "unknown_kind",
        "too_large",
        "bad_framing",
        "version",
        "not_authorized",
    ] {
        dropped(farm, reason, 1.0).await?;
    }
    // The connection and the controller are still fine: a proper status is applied.
    let ok = seal(&Envelope::new(pid("p-1"), status()), key)?;
    c.publish(own(Channel::Status), QoS::AtLeastOnce, false, ok)
        .await?;
    eventually("p-1 online", Duration::from_secs(10), async || {
        farm.get("/api/v1/printers/p-1")
            .await
            .ok()
            .filter(|p| p["state"] == "idle")
    })
    .await?;

    // HTTP: each refusal is problem+json with a reason a person can act on.
    let http = &farm.client;
    let url = |p: &str| format!("{}{p}", farm.http);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        (
            "a PNG",
            http.post(url("/api/v1/jobs?name=x.png"))
                .body(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec()),
            422,
        ),
        (
            "an empty file",
            http.post(url("/api/v1/jobs?name=e.gcode")).body(Vec::new()),
            422,
        ),
        (
            "text without G-code",
            http.post(url("/api/v1/jobs?name=t.gcode"))
                .body("hello\nworld\n"),
            422,
        ),
        (
            "a file over the limit",
            http.post(url("/api/v1/jobs?name=big.gcode"))
                .body("G1 X1 E1\n".repeat(200_000)),
            413,
        ),
        (
            "multipart",
            http.post(url("/api/v1/jobs"))
                .header("content-type", "multipart/form-data; boundary=x")
                .body("--x--"),
            415,
        ),
        // The same upload path behind every route that takes a file.
        (
            "multipart to /files",
            http.post(url("/api/v1/files"))
                .header("content-type", "multipart/form-data; boundary=x")
                .body("--x--"),
            415,
        ),
        (
            "multipart to /quotes",
            http.post(url("/api/v1/quotes"))
                .header("content-type", "multipart/form-data; boundary=x")
                .body("--x--"),
            415,
        ),
        (
            "a name with a newline",
            http.post(url("/api/v1/jobs?name=a%0Ab.gcode"))
                .body("G1 X1 E1\n"),
            422,
        ),
        (
            "zero copies",
            http.post(url("/api/v1/jobs?name=a.gcode&copies=0"))
                .body("G1 X1 E1\n"),
            422,
        ),
        (
            "broken JSON",
            http.post(url("/api/v1/printers"))
                .header("content-type", "application/json")
                .body("{\"id\":"),
            400,
        ),
        (
            "a bad printer id",
            http.post(url("/api/v1/printers"))
                .json(&serde_json::json!({"id": "Bad/Id"})),
            422,
        ),
        (
            "a bad job state",
            http.get(url("/api/v1/jobs?state=flying")),
            400,
        ),
        ("an unknown job", http.get(url("/api/v1/jobs/job-999")), 404),
        ("an unknown route", http.get(url("/api/v1/nope")), 404),
    ];
    for (what, req, want) in cases {
        let r = req.bearer_auth(&farm.admin).send().await?;
        let status = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        ensure!(
            status == want,
            "{what}: expected {want}, got {status} {body}"
        );
        ensure!(
            ctype == "application/problem+json",
            "{what}: content-type {ctype}"
        );
        ensure!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}: a detail to act on: {body}"
        );
    }
    let anon = http.get(url("/api/v1/printers")).send().await?;
    ensure!(anon.status().as_u16() == 401, "no token, no farm");
    let wrong = http
        .get(url("/api/v1/printers"))
        .bearer_auth("farm_wrong")
        .send()
        .await?;
    ensure!(wrong.status().as_u16() == 401, "a wrong token is refused");
    ensure!(
        farm.metric("farm_uploads_rejected_total{reason=\"not_gcode\"}")
            .await?
            >= 2.0
    );
    ensure!(
        farm.metric("farm_uploads_rejected_total{reason=\"too_large\"}")
            .await?
            >= 1.0
    );
    ensure!(
        farm.metric("farm_uploads_rejected_total{reason=\"multipart\"}")
            .await?
            >= 3.0
    );
    ensure!(
        farm.get("/api/v1/jobs").await?["items"]
            .as_array()
            .map(Vec::len)
            == Some(0),
        "no job was created"
    );
    ensure!(farm.get("/api/v1/health").await?["status"] == "ok");
    Ok(())
}

/// The embedded broker's topic ACL, with real clients over TCP: a printer publishes only on
/// its own agent channels and subscribes only to its own commands and acks; it cannot read
/// the farm's traffic, send another printer commands, clear another's retained status, or
/// leave a last will on another's topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printer_is_kept_to_its_own_topics() {
    let mut farm = Farm::start(FarmOptions::default())
        .await
        .expect("controller");
    let r = own_topics(&mut farm).await;
    or_logs(r, &farm);
}

/// A client whose every received packet after its CONNACK comes back on a channel.
async fn watched_client(
    farm: &Farm,
    id: &str,
    token: &str,
    will: Option<rumqttc::LastWill>,
) -> Result<(
    rumqttc::AsyncClient,
    tokio::sync::mpsc::UnboundedReceiver<rumqttc::Packet>,
)> {
    use rumqttc::{Event, MqttOptions, Packet};
    let mut o = MqttOptions::new(id, "127.0.0.1", farm.mqtt_port);
    o.set_credentials(id, token);
    if let Some(w) = will {
        o.set_last_will(w);
    }
    let (client, mut ev) = rumqttc::AsyncClient::new(o, 100);
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => anyhow::bail!("{e}"),
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("no CONNACK in 10 s"))??;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(e) = ev.poll().await {
            if let Event::Incoming(p) = e
                && tx.send(p).is_err()
            {
                return;
            }
        }
    });
    Ok((client, rx))
}

async fn own_topics(farm: &mut Farm) -> Result<()> {
    use rumqttc::{LastWill, Packet, SubscribeReasonCode};
    farm.enrol("p-1", false, "speed = 1.0").await?;
    farm.enrol("p-2", false, "speed = 1.0").await?;
    let (secret1, token1) = farm.agent_keys("p-1")?;
    let (secret2, token2) = farm.agent_keys("p-2")?;
    let t = Topics::default();
    let (p1, p2) = (pid("p-1"), pid("p-2"));

    // A will on another printer's topic: the login itself is refused.
    let will = LastWill::new(
        t.printer(&p2, Channel::Status),
        Vec::new(),
        QoS::AtLeastOnce,
        true,
    );
    let e = watched_client(farm, "p-1", &token1, Some(will))
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("a login with a will on p-2's topic was let in"))?;
    ensure!(
        e.to_string().contains("NotAuthorized"),
        "refused as not authorized: {e}"
    );

    let (c1, mut rx1) = watched_client(farm, "p-1", &token1, None).await?;
    let filters = [
        ("farm/#", false),
        ("farm/v1/printers/+/status", false),
        ("farm/v1/printers/p-2/commands", false),
        ("farm/v1/printers/p-1/status", false),
        ("farm/v1/printers/p-1/commands", true),
        ("farm/v1/printers/p-1/acks", true),
    ];
    for (f, _) in filters {
        c1.subscribe(f, QoS::AtLeastOnce).await?;
    }
    let mut answered = Vec::new();
    while answered.len() < filters.len() {
        match tokio::time::timeout(Duration::from_secs(10), rx1.recv()).await {
            Ok(Some(Packet::SubAck(a))) => answered.extend(a.return_codes),
            Ok(Some(Packet::Publish(p))) => anyhow::bail!("p-1 read {}", p.topic),
            Ok(Some(_)) => {}
            other => anyhow::bail!("no SUBACK: {other:?}"),
        }
    }
    for ((f, allowed), code) in filters.iter().zip(&answered) {
        ensure!(
            (*code != SubscribeReasonCode::Failure) == *allowed,
            "{f}: {code:?} (allowed: {allowed})"
        );
    }

    // p-2 reports for itself (retained, as agents do): the controller applies it.
    let (c2, _rx2) = watched_client(farm, "p-2", &token2, None).await?;
    let st = seal(&Envelope::new(p2.clone(), status()), secret2.as_bytes())?;
    c2.publish(t.printer(&p2, Channel::Status), QoS::AtMostOnce, true, st)
        .await?;
    eventually(
        "p-2's own status applied",
        Duration::from_secs(10),
        async || {
            farm.get("/api/v1/printers/p-2")
                .await
                .ok()
                .filter(|p| p["state"] == "idle")
        },
    )
    .await?;

    // p-1 tries to clear p-2's retained status and to command p-2: both refused and counted.
    c1.publish(
        t.printer(&p2, Channel::Status),
        QoS::AtLeastOnce,
        true,
        Vec::new(),
    )
    .await?;
    c1.publish(
        t.printer(&p2, Channel::Commands),
        QoS::AtLeastOnce,
        false,
        b"{}".to_vec(),
    )
    .await?;
    dropped(farm, "not_authorized", 2.0).await?;
    // p-1's own status still goes through; by the time it is applied, p-1 would have been
    // sent p-2's status if it could read it.
    let own = seal(&Envelope::new(p1.clone(), status()), secret1.as_bytes())?;
    c1.publish(t.printer(&p1, Channel::Status), QoS::AtLeastOnce, true, own)
        .await?;
    eventually(
        "p-1's own status applied",
        Duration::from_secs(10),
        async || {
            farm.get("/api/v1/printers/p-1")
                .await
                .ok()
                .filter(|p| p["state"] == "idle")
        },
    )
    .await?;
    while let Ok(p) = rx1.try_recv() {
        if let Packet::Publish(p) = p {
            anyhow::bail!("p-1 read {}", p.topic);
        }
    }
    let p2_view = farm.get("/api/v1/printers/p-2").await?;
    ensure!(p2_view["state"] == "idle", "p-2 untouched: {p2_view}");
    Ok(())
}
