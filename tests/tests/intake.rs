//! The intake API: EMS hands the gateway an outbound message as HL7 or as a typed JSON
//! record, and gets a queue id once it is on disk; what the spec does not declare, or what
//! does not build, is refused with the reason and nothing is queued. The MLLP listener holds
//! a bounded number of connections and closes idle ones.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use hl7gw_runtime::config::{Acknowledgement, SendHeader};
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
            header: SendHeader {
                sending_facility: "DEMO".into(),
                ..SendHeader::DEFAULT
            },
            acknowledgement: Acknowledgement::Application,
            versions: vec!["2.4".into()],
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
    post_with(addr, path, &[], body).await
}

/// [`post`] with extra header lines.
async fn post_with(
    addr: std::net::SocketAddr,
    path: &str,
    extra: &[&str],
    body: &[u8],
) -> (u16, serde_json::Value) {
    let mut client = Http::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let mut headers = vec![
        "Host: 127.0.0.1".to_owned(),
        format!("Content-Length: {}", body.len()),
        "Connection: close".to_owned(),
    ];
    headers.extend(extra.iter().map(|h| (*h).to_owned()));
    let request = wire::post(path, &headers, body);
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
    // A version the Trust's interface does not exchange (it would answer AR 203).
    let v251 = ORU.replace("|T|2.4", "|T|2.5.1").replace("ORU-1", "ORU-V");
    let (status, why) = post(addr, "/outbound", v251.as_bytes()).await;
    assert_eq!(status, 422, "{why}");
    assert!(why["error"].as_str().unwrap().contains("MSH-12"), "{why}");
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

    let running = start(true, ListenerLimits::new(2, Duration::from_millis(1500))).await;
    let (addr, queue) = (running.mllp.unwrap(), running.queue.clone());

    // Two idle connections take both slots; a third is closed at once. Each connection's
    // slot is taken in its own task after admission, so tasks started together may take
    // them in any order: each connection is given time to take its slot before the next.
    let settle = Duration::from_millis(200);
    let mut first = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(settle).await;
    let mut second = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(settle).await;
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

/// The demo report of [`ORU`] as its JSON record.
fn report_json() -> serde_json::Value {
    let report =
        gw_demo::records::Report::from_hl7(&Message::parse(ORU.as_bytes()).unwrap()).unwrap();
    serde_json::to_value(&report).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hl7_that_does_not_map_to_its_record_is_refused_with_every_error_and_not_queued() {
    use hl7gw_runtime::hl7::{AckCode, read_ack};
    use hl7gw_runtime::mllp::{Deframer, frame, read_message};

    let running = start(true, ListenerLimits::default()).await;
    let (http, mllp, queue) = (running.http, running.mllp.unwrap(), running.queue.clone());

    // A procedure the customer does not offer, and an NHS number with a wrong check digit.
    let bad = ORU
        .replace("COL^Colonoscopy", "XRAY^Chest X-ray")
        .replace("9449305552", "9449305553");
    let (status, why) = post(http, "/outbound", bad.as_bytes()).await;
    assert_eq!(status, 422, "{why}");
    let errors = why["errors"].as_array().unwrap();
    let found: Vec<(u64, &str)> = errors
        .iter()
        .map(|e| (e["code"].as_u64().unwrap(), e["location"].as_str().unwrap()))
        .collect();
    assert!(
        found
            .iter()
            .any(|(code, at)| *code == 103 && at.starts_with("OBR-4")),
        "{why}"
    );
    assert!(
        found
            .iter()
            .any(|(code, at)| *code == 102 && at.starts_with("PID-3")),
        "{why}"
    );
    assert!(errors.iter().all(|e| e["message"].is_string()), "{why}");
    // A required field missing (the PDF).
    let no_pdf = ORU.split("OBX|").next().unwrap().to_owned();
    let (status, why) = post(http, "/outbound", no_pdf.as_bytes()).await;
    assert_eq!(
        (status, why["errors"][0]["code"].as_u64()),
        (422, Some(101)),
        "{why}"
    );

    // Over MLLP the same message is answered AE with one ERR per error.
    let mut stream = tokio::net::TcpStream::connect(mllp).await.unwrap();
    let mut deframer = Deframer::new(1 << 20);
    stream.write_all(&frame(bad.as_bytes())).await.unwrap();
    let ack = tokio::time::timeout(
        Duration::from_secs(10),
        read_message(&mut stream, &mut deframer),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    let ack = read_ack(&Message::parse(&ack).unwrap()).unwrap();
    assert_eq!(ack.code, AckCode::ApplicationError);
    let codes: Vec<Option<u16>> = ack.errors.iter().map(|e| e.code).collect();
    assert!(codes.contains(&Some(103)), "{codes:?}");
    assert_eq!(
        queue.status("engine").await.unwrap().depth,
        0,
        "nothing queued"
    );

    drop(stream);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_queues_its_request_once() {
    let running = start(true, ListenerLimits::default()).await;
    let (http, queue) = (running.http, running.queue.clone());

    // JSON: each request builds a new MSH-10, so only the key makes a repeat a repeat.
    let json = serde_json::json!({ "record": report_json() });
    let body = json.to_string();
    let key = ["Idempotency-Key: report-PLC-1001"];
    let (status, first) = post_with(http, "/outbound/ORU%5ER01", &key, body.as_bytes()).await;
    assert_eq!((status, &first["created"]), (201, &true.into()), "{first}");
    let (status, again) = post_with(http, "/outbound/ORU%5ER01", &key, body.as_bytes()).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["created"], false);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(
        again["control_id"], first["control_id"],
        "the earlier entry's MSH-10"
    );
    // Without the key the same JSON is a new message (a new MSH-10).
    let (status, _) = post(http, "/outbound/ORU%5ER01", body.as_bytes()).await;
    assert_eq!(status, 201);
    // The key with another body is a conflict, and nothing is queued.
    let mut other = json.clone();
    other["record"]["placer_id"] = "PLC-9999".into();
    let (status, why) = post_with(
        http,
        "/outbound/ORU%5ER01",
        &key,
        other.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 409, "{why}");
    assert!(
        why["error"].as_str().unwrap().contains("report-PLC-1001"),
        "{why}"
    );
    // HL7 bodies take keys too.
    let hl7_key = ["Idempotency-Key: oru-7"];
    let oru = ORU.replace("ORU-1", "ORU-7");
    let (status, _) = post_with(http, "/outbound", &hl7_key, oru.as_bytes()).await;
    assert_eq!(status, 201);
    let (status, again) = post_with(http, "/outbound", &hl7_key, oru.as_bytes()).await;
    assert_eq!((status, &again["control_id"]), (200, &"ORU-7".into()));
    // A key that is not printable ASCII is refused.
    let (status, _) = post_with(http, "/outbound", &["Idempotency-Key: "], oru.as_bytes()).await;
    assert_eq!(status, 400);
    assert_eq!(queue.status("engine").await.unwrap().depth, 3);

    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_header_names_only_msh_3_to_6() {
    let running = start(true, ListenerLimits::default()).await;
    let (http, queue) = (running.http, running.queue.clone());
    let record = report_json();
    let ignored = serde_json::json!({ "record": record, "header": { "control_id": "MINE-1" } });
    let (status, why) = post(http, "/outbound/ORU%5ER01", ignored.to_string().as_bytes()).await;
    assert_eq!(status, 422, "{why}");
    assert!(
        why["error"].as_str().unwrap().contains("control_id"),
        "{why}"
    );
    let stray = serde_json::json!({ "record": record, "priority": "high" });
    let (status, _) = post(http, "/outbound/ORU%5ER01", stray.to_string().as_bytes()).await;
    assert_eq!(status, 422);
    let named = serde_json::json!({
        "record": record,
        "header": { "receiving_application": "TIE", "receiving_facility": "RXX" },
    });
    let (status, queued) = post(http, "/outbound/ORU%5ER01", named.to_string().as_bytes()).await;
    assert_eq!(status, 201, "{queued}");
    let detail = queue
        .show(queued["id"].as_i64().unwrap())
        .await
        .unwrap()
        .unwrap();
    let built = Message::parse(&detail.raw).unwrap();
    let msh: Vec<_> = (3..=6).map(|f| built.header_text(f, 1)).collect();
    assert_eq!(msh, ["EMS", "DEMO", "TIE", "RXX"]);
    assert_eq!(queue.status("engine").await.unwrap().depth, 1);

    running.stop().await;
}

/// Every refusal is logged with a fixed reason, as the receiver's are (never the message's
/// content: the NHS number a mapping error quotes to EMS stays out of the log).
#[tokio::test]
async fn every_refusal_is_logged_with_its_reason() {
    use hl7gw_runtime::hl7::AckCode;
    use hl7gw_runtime::mllp::Deframer;

    let logs = hl7gw_tests::logs::capture();
    let running = start(true, ListenerLimits::default()).await;
    let adt = ORU
        .replace("ORU^R01^ORU_R01", "ADT^A28^ADT_A05")
        .replace("ORU-1", "ADT-1");
    let (status, _) = post(running.http, "/outbound", adt.as_bytes()).await;
    assert_eq!(status, 422);
    let (status, _) = post(running.http, "/outbound", b"hello").await;
    assert_eq!(status, 400);
    let bad_nhs = ORU.replace("9449305552", "9449305553");
    let (status, _) = post(running.http, "/outbound", bad_nhs.as_bytes()).await;
    assert_eq!(status, 422);
    let (status, _) = post(running.http, "/nowhere", b"").await;
    assert_eq!(status, 404);
    let (status, _) = post(running.http, "/outbound", ORU.as_bytes()).await;
    assert_eq!(status, 201, "an accepted message is not a refusal");

    let mut stream = tokio::net::TcpStream::connect(running.mllp.unwrap())
        .await
        .unwrap();
    let mut deframer = Deframer::new(1 << 20);
    let rejected = mllp_exchange(&mut stream, &mut deframer, &adt).await;
    assert_eq!(rejected.code, AckCode::ApplicationReject);
    let error = mllp_exchange(
        &mut stream,
        &mut deframer,
        &bad_nhs.replace("ORU-1", "ORU-9"),
    )
    .await;
    assert_eq!(error.code, AckCode::ApplicationError);
    drop(stream);
    running.stop().await;

    let http = |status: &str, reason: &str| {
        logs.lines_with(&[
            "intake API: request refused",
            &format!("status={status}"),
            &format!("reason=\"{reason}\""),
        ])
    };
    assert_eq!(http("422", "type_not_declared").len(), 1, "{}", logs.text());
    assert_eq!(http("400", "not_hl7").len(), 1, "{}", logs.text());
    assert_eq!(http("422", "does_not_map").len(), 1, "{}", logs.text());
    assert_eq!(http("404", "no_such_path").len(), 1, "{}", logs.text());
    let mllp = |ack: &str, reason: &str| {
        logs.lines_with(&[
            "intake MLLP: message refused",
            &format!("ack=\"{ack}\""),
            &format!("reason=\"{reason}\""),
        ])
    };
    assert_eq!(mllp("AR", "type_not_declared").len(), 1, "{}", logs.text());
    assert_eq!(mllp("AE", "does_not_map").len(), 1, "{}", logs.text());
    assert_eq!(
        logs.lines_with(&["refused"]).len(),
        6,
        "one line per refusal, none for the accepted message: {}",
        logs.text()
    );
    assert!(
        !logs.text().contains("9449305553"),
        "no message content in the log: {}",
        logs.text()
    );
}
