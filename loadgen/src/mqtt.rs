//! A minimal MQTT 3.1.1 client on tokio: CONNECT/CONNACK, PUBLISH QoS 0/1, PUBACK, SUBSCRIBE,
//! PINGREQ. The packet codec is rumqttc's (`mqttbytes::v4`); the connection is ours.
//!
//! Why not rumqttc's `AsyncClient`: each client is an `EventLoop` with its own request
//! channel, an 8 KiB bitset for incoming packet ids, an inflight table and a task polling it;
//! the load generator holds 10,000+ connections in one process and must stay cheap beside the
//! controller it measures. Here one printer is one task that owns its socket and two small
//! buffers, and nothing is queued between them.
//!
//! [`Conn::read`] is cancel-safe (bytes enter the buffer only when a read completes and a
//! packet leaves it only whole), so it can sit in a `select!` beside timers.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    ConnAck, Connect, ConnectReturnCode, LastWill, Packet, PubAck, Publish, Subscribe,
    SubscribeFilter,
};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Room for the largest envelope plus topic and framing.
pub const MAX_PACKET: usize = farm_protocol::MAX_PAYLOAD_BYTES + 4096;

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("MQTT framing: {0}")]
    Codec(String),
    #[error(
        "the broker refused the login ({0:?}): check the printer's token in the enrolment file"
    )]
    Refused(ConnectReturnCode),
    #[error("the broker closed the connection")]
    Closed,
    #[error("no CONNACK within {0:?}")]
    Timeout(Duration),
    #[error("expected CONNACK, got {0}")]
    Unexpected(&'static str),
}

impl From<CodecError> for MqttError {
    fn from(e: CodecError) -> Self {
        MqttError::Codec(e.to_string())
    }
}

/// Who connects, with what will.
pub struct Login<'a> {
    pub client_id: &'a str,
    pub user: &'a str,
    pub pass: &'a str,
    pub keep_alive: Duration,
    pub clean_session: bool,
    /// (topic, payload): published QoS 1, retained, when the connection dies without DISCONNECT.
    pub will: Option<(String, Bytes)>,
}

/// One open MQTT connection.
pub struct Conn {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    inbuf: BytesMut,
    outbuf: BytesMut,
    next_pkid: u16,
}

fn kind(p: &Packet) -> &'static str {
    match p {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}

impl Conn {
    /// TCP connect (from `source` if given: spreading over 127.x.y.z multiplies the loopback
    /// ports available), CONNECT, and wait for the CONNACK. Returns `session_present`.
    pub async fn open(
        target: SocketAddr,
        source: Option<IpAddr>,
        login: &Login<'_>,
        limit: Duration,
    ) -> Result<(Conn, bool), MqttError> {
        tokio::time::timeout(limit, Self::open_inner(target, source, login))
            .await
            .map_err(|_| MqttError::Timeout(limit))?
    }

    async fn open_inner(
        target: SocketAddr,
        source: Option<IpAddr>,
        login: &Login<'_>,
    ) -> Result<(Conn, bool), MqttError> {
        let socket = if target.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = source {
            // A flapping printer leaves a TIME_WAIT socket behind on every drop; without this
            // the source ports of one address run out within a minute.
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(target).await?;
        stream.set_nodelay(true)?;
        let (rd, wr) = stream.into_split();
        let mut conn = Conn {
            rd,
            wr,
            inbuf: BytesMut::with_capacity(1024),
            outbuf: BytesMut::with_capacity(1024),
            next_pkid: 0,
        };
        let mut c = Connect::new(login.client_id);
        c.keep_alive = u16::try_from(login.keep_alive.as_secs()).unwrap_or(u16::MAX);
        c.clean_session = login.clean_session;
        c.set_login(login.user, login.pass);
        c.last_will = login.will.as_ref().map(|(topic, payload)| LastWill {
            topic: topic.clone(),
            message: payload.clone(),
            qos: QoS::AtLeastOnce,
            retain: true,
        });
        conn.send(Packet::Connect(c)).await?;
        match conn.read().await? {
            Packet::ConnAck(ConnAck {
                code: ConnectReturnCode::Success,
                session_present,
            }) => Ok((conn, session_present)),
            Packet::ConnAck(ConnAck { code, .. }) => Err(MqttError::Refused(code)),
            other => Err(MqttError::Unexpected(kind(&other))),
        }
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }

    async fn send(&mut self, p: Packet) -> Result<(), MqttError> {
        self.outbuf.clear();
        p.write(&mut self.outbuf, MAX_PACKET)?;
        self.wr.write_all(&self.outbuf).await?;
        Ok(())
    }

    /// PUBLISH; QoS 1 gets the next packet id (its PUBACK is only counted: delivery that
    /// matters is confirmed by the controller's own acks, as for the real agent).
    pub async fn publish(
        &mut self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: Bytes,
    ) -> Result<(), MqttError> {
        let pkid = if qos == QoS::AtMostOnce {
            0
        } else {
            self.pkid()
        };
        self.send(Packet::Publish(Publish {
            dup: false,
            qos,
            retain,
            topic: topic.to_string(),
            pkid,
            payload,
        }))
        .await
    }

    pub async fn subscribe(&mut self, filters: &[(String, QoS)]) -> Result<(), MqttError> {
        let pkid = self.pkid();
        self.send(Packet::Subscribe(Subscribe {
            pkid,
            filters: filters
                .iter()
                .map(|(path, qos)| SubscribeFilter::new(path.clone(), *qos))
                .collect(),
        }))
        .await
    }

    pub async fn puback(&mut self, pkid: u16) -> Result<(), MqttError> {
        self.send(Packet::PubAck(PubAck::new(pkid))).await
    }

    pub async fn ping(&mut self) -> Result<(), MqttError> {
        self.send(Packet::PingReq).await
    }

    /// A clean goodbye: the broker then drops the will.
    pub async fn disconnect(&mut self) -> Result<(), MqttError> {
        self.send(Packet::Disconnect).await
    }

    /// The next whole packet. Cancel-safe.
    pub async fn read(&mut self) -> Result<Packet, MqttError> {
        loop {
            match Packet::read(&mut self.inbuf, MAX_PACKET) {
                Ok(p) => return Ok(p),
                Err(CodecError::InsufficientBytes(_)) => {}
                Err(e) => return Err(e.into()),
            }
            if self.rd.read_buf(&mut self.inbuf).await? == 0 {
                return Err(MqttError::Closed);
            }
        }
    }
}
