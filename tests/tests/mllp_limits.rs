//! The intake's MLLP listener holds a bounded number of connections and closes idle ones,
//! so idle MLLP peers can no longer exhaust the process's file descriptors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use hl7gw_runtime::hl7::{AckCode, Message, read_ack};
use hl7gw_runtime::intake::{Intake, IntakeConfig};
use hl7gw_runtime::mllp::{Deframer, ListenerLimits, frame, read_message};
use hl7gw_runtime::queue::Queue;
use hl7gw_runtime::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ORU: &str = "MSH|^~\\&|EMS|EMS-HOST|TIE|DEMO-TRUST|20260101130000||ORU^R01^ORU_R01|ORU-1|T|2.4\r\
PID|1||9449305552^^^NHS^NH~D123456^^^DEMO^MR||SMITH^JOHN||19700101|F\r\
OBR|1|PLC-1001|FIL-2002|COL^Colonoscopy^LOCAL\r\
OBX|1|ED|PDF||^application^pdf^Base64^JVBERi0xLjQKJSVFT0YK\r";

/// Waits (bounded) for the server to close `stream`: EOF or a reset.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(limit, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_connections_are_capped_and_idle_ones_closed() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::new(Store::open(dir.path().join("gateway.sqlite")).unwrap());
    let intake = Intake::bind(
        "127.0.0.1:0".parse().unwrap(),
        Some("127.0.0.1:0".parse().unwrap()),
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
    .with_mllp_limits(ListenerLimits::new(2, Duration::from_millis(600)));
    let addr = intake.mllp_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(intake.serve(async {
        let _ = stopped.await;
    }));

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
    stream.write_all(&frame(ORU.as_bytes())).await.unwrap();
    let mut deframer = Deframer::new(1 << 20);
    let ack = tokio::time::timeout(
        Duration::from_secs(10),
        read_message(&mut stream, &mut deframer),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    let ack = read_ack(&Message::parse(&ack).unwrap()).unwrap();
    assert_eq!(ack.code, AckCode::ApplicationAccept);
    assert_eq!(queue.status("engine").await.unwrap().depth, 1);

    drop(stream);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
}
