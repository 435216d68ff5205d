//! The intake API: EMS hands the gateway an outbound message as HL7 or as a typed JSON
//! record, and gets a queue id once it is on disk; what the spec does not declare, or what
//! does not build, is refused with the reason and nothing is queued. The MLLP listener holds
//! a bounded number of connections and closes idle ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use hl7gw_runtime::hl7::Message;
use hl7gw_runtime::intake::{Intake, IntakeConfig};
use hl7gw_runtime::mllp::ListenerLimits;
use hl7gw_runtime::queue::Queue;
use hl7gw_runtime::store::Store;
use hl7gw_tests::wire::{self, Http};
use tokio::io::AsyncWriteExt;

const ORU: &str = "MSH|^~\\&|EMS|EMS-HOST|TIE|DEMO-TRUST|20260101130000||ORU^R01^ORU_R01|ORU-1|T|2.4\r\
PID|1||9449305552^^^NHS^NH~D123456^^^DEMO^MR||SMITH^JOHN||19700101|F\r\
OBR|1|PLC-1001|FIL-2002|COL^Colonoscopy^LOCAL\r\
OBX|1|ED|PDF||^application^pdf^Base64^JVBERi0xLjQKJSVFT0YK\r";

/// An intake on ephemeral loopback ports (with its MLLP listener when `mllp`), serving the
/// demo spec's TEST environment from a fresh store.
struct Running {
    http: SocketAddr,
    mllp: Option<SocketAddr>,
    queue: Queue,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start(mllp: bool, limits: ListenerLimits) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::new(Store::open(dir.path().join("gateway.sqlite")).unwrap());
    let intake = Intake::bind(
        "127.0.0.1:0".parse().unwrap(),
        mllp.then(|| "127.0.0.1:0".parse().unwrap()),
        queue.clone(),
        IntakeConfig {
            destination: "engine".into(),
            spec: std::sync::Arc::new(gw_demo::SPEC),
            processing_id: "T".into(),
            sending_application: "EMS".into(),
            sending_facility: "DEMO".into(),
        },
    )
    .await
    .unwrap()
    .with_mllp_limits(limits);
    let (http, mllp) = (intake.http_addr().unwrap(), intake.mllp_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(intake.serve(async {
        let _ = stopped.await;
    }));
    Running {
        http,
        mllp,
        queue,
        stop,
        server,
        _dir: dir,
    }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .unwrap()
            .unwrap();
    }
}

/// One HTTP/1.1 request on a fresh connection; returns the status and the body.
async fn post(addr: std::net::SocketAddr, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let mut client = Http::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let request = wire::post(
        path,
        &[
            "Host: 127.0.0.1".to_owned(),
            format!("Content-Length: {}", body.len()),
            "Connection: close".to_owned(),
        ],
        body,
    );
    client.send(&request).await.unwrap();
    let response = client.read_response().await.unwrap();
    (
        response.status,
        serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hl7_and_json_records_are_queued_and_the_rest_refused() {
    let running = start(false, ListenerLimits::default()).await;
    let (addr, queue) = (running.http, running.queue.clone());

    // HL7 as is.
    let (status, body) = post(addr, "/outbound", ORU.as_bytes()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["control_id"], "ORU-1");
    // The same bytes again: the same queue entry.
    let (status, again) = post(addr, "/outbound", ORU.as_bytes()).await;
    assert_eq!((status, &again["id"]), (200, &body["id"]));

    // A typed record as JSON, built into HL7 by the generated code.
    let report =
        gw_demo::records::Report::from_hl7(&Message::parse(ORU.as_bytes()).unwrap()).unwrap();
    let json = serde_json::json!({ "record": serde_json::to_value(&report).unwrap() });
    let (status, queued) = post(addr, "/outbound/ORU%5ER01", json.to_string().as_bytes()).await;
    assert_eq!(status, 201, "{queued}");
    let id = queued["id"].as_i64().unwrap();
    let detail = queue.show(id).await.unwrap().unwrap();
    let built = Message::parse(&detail.raw).unwrap();
    assert_eq!(gw_demo::records::Report::from_hl7(&built).unwrap(), report);
    assert_eq!(built.processing_id(), "T");

    // Refusals: undeclared type, bad record, wrong environment, not HL7.
    let adt = ORU
        .replace("ORU^R01^ORU_R01", "ADT^A28^ADT_A05")
        .replace("ORU-1", "ADT-1");
    let (status, why) = post(addr, "/outbound", adt.as_bytes()).await;
    assert_eq!(status, 422);
    assert!(
        why["error"]
            .as_str()
            .unwrap()
            .contains("not declared outbound"),
        "{why}"
    );
    let mut bad = json.clone();
    bad["record"]["patient"]["nhs_number"] = "9449305553".into();
    let (status, why) = post(addr, "/outbound/ORU%5ER01", bad.to_string().as_bytes()).await;
    assert_eq!(status, 422);
    assert!(
        why["error"].as_str().unwrap().contains("nhs_number"),
        "{why}"
    );
    let prod = ORU.replace("|T|2.4", "|P|2.4").replace("ORU-1", "ORU-P");
    let (status, _) = post(addr, "/outbound", prod.as_bytes()).await;
    assert_eq!(status, 422);
    let (status, _) = post(addr, "/outbound", b"hello").await;
    assert_eq!(status, 400);
    let status = queue.status("engine").await.unwrap();
    assert_eq!(status.depth, 2, "only the two accepted messages are queued");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_intake_answers_a_commit_ack_once_queued() {
    use hl7gw_runtime::hl7::AckCode;
    use hl7gw_runtime::mllp::Deframer;

    let running = start(true, ListenerLimits::default()).await;
    let (addr, queue) = (running.mllp.unwrap(), running.queue.clone());

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut deframer = Deframer::new(1 << 20);
    let mut exchange =
        async |message: &str| mllp_exchange(&mut stream, &mut deframer, message).await;
    // Two messages on one connection: each acknowledged once it is on disk.
    let first = exchange(ORU).await;
    assert_eq!(
        (first.code, first.control_id.as_str()),
        (AckCode::ApplicationAccept, "ORU-1")
    );
    let second = exchange(&ORU.replace("ORU-1", "ORU-2")).await;
    assert_eq!(second.code, AckCode::ApplicationAccept);
    assert_eq!(queue.status("engine").await.unwrap().depth, 2);
    // A type the spec does not send is rejected, with the reason in ERR.
    let adt = ORU
        .replace("ORU^R01^ORU_R01", "ADT^A28^ADT_A05")
        .replace("ORU-1", "ADT-1");
    let rejected = exchange(&adt).await;
    assert_eq!(rejected.code, AckCode::ApplicationReject);
    assert_eq!(rejected.errors[0].code, Some(200));
    assert_eq!(queue.status("engine").await.unwrap().depth, 2);

    drop(stream);
    running.stop().await;
}

/// One framed message out and its ACK back (bounded), read.
async fn mllp_exchange(
    stream: &mut tokio::net::TcpStream,
    deframer: &mut hl7gw_runtime::mllp::Deframer,
    message: &str,
) -> hl7gw_runtime::hl7::AckReceipt {
    use hl7gw_runtime::mllp::{frame, read_message};
    stream.write_all(&frame(message.as_bytes())).await.unwrap();
    let ack = tokio::time::timeout(Duration::from_secs(10), read_message(stream, deframer))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    hl7gw_runtime::hl7::read_ack(&Message::parse(&ack).unwrap()).unwrap()
}

/// Waits (bounded) for the server to close `stream`: EOF or a reset.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(limit, tokio::io::AsyncReadExt::read(stream, &mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_connections_are_capped_and_idle_ones_closed() {
    use hl7gw_runtime::hl7::AckCode;
    use hl7gw_runtime::mllp::Deframer;
    use tokio::net::TcpStream;

    let running = start(true, ListenerLimits::new(2, Duration::from_millis(600))).await;
    let (addr, queue) = (running.mllp.unwrap(), running.queue.clone());

    // Two idle connections take both slots; a third is closed at once.
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    let mut third = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut third, Duration::from_millis(400)).await,
        "a connection past the cap was kept"
    );
    // The idle ones are closed after the idle timeout, not before.
    assert!(!closed_within(&mut first, Duration::from_millis(200)).await);
    assert!(closed_within(&mut first, Duration::from_secs(5)).await);
    assert!(closed_within(&mut second, Duration::from_secs(5)).await);

    // Their slots are free again: a message is queued and acknowledged.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let ack = mllp_exchange(&mut stream, &mut Deframer::new(1 << 20), ORU).await;
    assert_eq!(ack.code, AckCode::ApplicationAccept);
    assert_eq!(queue.status("engine").await.unwrap().depth, 1);

    drop(stream);
    running.stop().await;
}
