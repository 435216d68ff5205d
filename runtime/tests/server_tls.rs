//! The receiver end to end over real TLS on 127.0.0.1: certificates from a throwaway CA,
//! requests written byte for byte as the Trusts' engines write them (docs/peers.md),
//! the status-code contract, time limits, the IP allowlist, and the operations port.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hl7gw_runtime::hl7::Charset;
use hl7gw_runtime::listeners::Role;
use hl7gw_runtime::metrics::reject;
use hl7gw_runtime::server::{MediaType, OpsServer, RequestContentType, ResponseContentType};
use hl7gw_runtime::tls::TlsFailure;
use hl7gw_tests::wire::{Http, RawResponse, simple_post, tls_over};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{ACK, CLIENT_CN, MESSAGE, Pki, TestServer, bounded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const H1: &[&[u8]] = &[b"http/1.1"];

async fn client(
    server: &TestServer,
    pki: &Pki,
) -> Http<tokio_rustls::client::TlsStream<TcpStream>> {
    Http::new(
        server
            .connect(pki.client_config(Some(&pki.client), H1))
            .await
            .unwrap(),
    )
}

/// One request on a fresh connection.
async fn exchange(server: &TestServer, pki: &Pki, request: &[u8]) -> RawResponse {
    let mut c = client(server, pki).await;
    c.send(request).await.unwrap();
    c.read_response().await.unwrap()
}

#[tokio::test]
async fn hapi_request_gets_an_hl7_ack_then_the_client_closes() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        // HAPI's simple client: one connection per message, closed by the client.
        for _ in 0..2 {
            let mut c = client(&server, &pki).await;
            c.send(&server.hapi(MESSAGE)).await.unwrap();
            let r = c.read_response().await.unwrap();
            r.assert_http11_with_reason();
            assert_eq!(r.status_line, "HTTP/1.1 200 OK");
            // HAPI: application/hl7-v2 and a lowercase `charset=`.
            assert_eq!(
                r.header("content-type"),
                Some("application/hl7-v2; charset=UTF-8")
            );
            assert_eq!(r.body, ACK);
            assert!(r.header("x-request-id").is_some());
            c.stream.shutdown().await.unwrap();
        }
        let seen = server.handler.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].body, MESSAGE);
        assert_eq!(seen[0].charset, Some(Charset::Utf8));
        assert_eq!(seen[0].media_type, Some(MediaType::Hl7V2));
        assert_eq!(seen[0].peer_subject, format!("CN={CLIENT_CN}"));
        assert_ne!(seen[0].request_id, seen[1].request_id);
        assert_eq!(server.metrics.messages_count("ADT^A28", "AA"), 2);
        assert_eq!(server.metrics.responses_count(200), 2);
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn mirth_keeps_one_connection_and_gets_text_plain() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        let mut c = client(&server, &pki).await;
        for _ in 0..3 {
            c.send(&server.mirth(MESSAGE)).await.unwrap();
            let r = c.read_response().await.unwrap();
            r.assert_http11_with_reason();
            assert_eq!(r.status, 200);
            // Mirth Base64-encodes an application/* ACK by default: text/plain in, out.
            assert_eq!(r.header("content-type"), Some("text/plain; charset=UTF-8"));
            assert_ne!(r.header("connection"), Some("close"));
            assert_eq!(r.body, ACK);
        }
        assert_eq!(server.handler.seen().len(), 3);
        assert!(
            server
                .metrics
                .render()
                .contains("hl7gw_connections_accepted_total 1\n")
        );
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn connection_close_from_the_client_is_honoured() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        let mut c = client(&server, &pki).await;
        c.send(&simple_post(
            "/hl7",
            Some("application/hl7-v2"),
            MESSAGE,
            &["Connection: close"],
        ))
        .await
        .unwrap();
        let r = c.read_response().await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("connection"), Some("close"));
        let rest = c.read_to_close().await.unwrap();
        assert!(rest.is_empty());
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn hyper_http1_client_two_requests_one_connection() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        let tls = server
            .connect(pki.client_config(Some(&pki.client), H1))
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        let driver = tokio::spawn(conn);
        for _ in 0..2 {
            let request = hyper::Request::post("/hl7")
                .header("host", "localhost")
                .header("content-type", "x-application/hl7-v2+er7; charset=utf-8")
                .body(Full::new(Bytes::from_static(MESSAGE)))
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.version(), hyper::Version::HTTP_11);
            assert_eq!(
                response.headers()["content-type"],
                "x-application/hl7-v2+er7; charset=UTF-8"
            );
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], ACK);
        }
        drop(sender);
        let _ = driver.await;
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn http2_is_offered_only_when_enabled() {
    bounded(async {
        let pki = Pki::new();
        // By default a client offering h2 (JDK HttpClient, curl) gets HTTP/1.1, where the
        // 100 Continue it may wait for is sent.
        let server = TestServer::start(&pki, |_| {}).await;
        let tls = server
            .connect(pki.client_config(Some(&pki.client), &[b"h2", b"http/1.1"]))
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        let mut c = Http::new(tls);
        c.send(&server.mirth(MESSAGE)).await.unwrap();
        assert_eq!(c.read_response().await.unwrap().status, 200);
        // An HTTP/2 preface without ALPN is not served either.
        let tls = server
            .connect(pki.client_config(Some(&pki.client), &[]))
            .await
            .unwrap();
        let mut c = Http::new(tls);
        c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
        let answer = c.read_to_close().await.unwrap_or_default();
        // An HTTP/2 server would answer with its SETTINGS frame; HTTP/1.1 refuses or closes.
        assert!(
            answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
        server.stop().await.unwrap();
        // Enabled: ALPN chooses h2.
        let server = TestServer::start(&pki, |s| s.http2 = true).await;
        let tls = server
            .connect(pki.client_config(Some(&pki.client), &[b"h2", b"http/1.1"]))
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn http2_through_alpn() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |s| s.http2 = true).await;
        let tls = server
            .connect(pki.client_config(Some(&pki.client), &[b"h2", b"http/1.1"]))
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        let driver = tokio::spawn(conn);
        for _ in 0..2 {
            let request =
                hyper::Request::post(format!("https://localhost:{}/hl7", server.addr.port()))
                    .header("content-type", "application/hl7-v2; charset=UTF-8")
                    .body(Full::new(Bytes::from_static(MESSAGE)))
                    .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.version(), hyper::Version::HTTP_2);
            assert_eq!(response.status(), 200);
            assert_eq!(
                response.headers()["content-type"],
                "application/hl7-v2; charset=UTF-8"
            );
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], ACK);
        }
        // An error on HTTP/2 carries no Connection header (forbidden there).
        let request = hyper::Request::get(format!("https://localhost:{}/hl7", server.addr.port()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 405);
        assert!(response.headers().get("connection").is_none());
        drop(sender);
        let _ = driver.await;
        assert_eq!(server.handler.seen().len(), 2);
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn tls12_client_is_served() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        let config = pki.client_config_versions(Some(&pki.client), H1, &[&rustls::version::TLS12]);
        let tls = server.connect(config).await.unwrap();
        assert_eq!(
            tls.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        let mut c = Http::new(tls);
        c.send(&server.mirth(MESSAGE)).await.unwrap();
        assert_eq!(c.read_response().await.unwrap().status, 200);
        server.stop().await.unwrap();
    })
    .await;
}

/// The client cannot get an HTTP response: the handshake fails, or (TLS 1.3, where the
/// client finishes before the server has checked its certificate) the first read fails.
async fn assert_refused(server: &TestServer, config: Arc<rustls::ClientConfig>) {
    let tls = match server.connect(config).await {
        Err(_) => return,
        Ok(tls) => tls,
    };
    let mut c = Http::new(tls);
    // The write may already fail.
    let _ = c.stream.write_all(&server.mirth(MESSAGE)).await;
    let _ = c.stream.flush().await;
    match c.read_to_close().await {
        Ok(bytes) => assert!(
            bytes.is_empty(),
            "got {:?}",
            String::from_utf8_lossy(&bytes)
        ),
        Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::TimedOut, "{e}"),
    }
}

#[tokio::test]
async fn no_client_certificate_fails_the_handshake() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        for versions in [
            &[&rustls::version::TLS13][..],
            &[&rustls::version::TLS12][..],
        ] {
            assert_refused(&server, pki.client_config_versions(None, H1, versions)).await;
        }
        server
            .wait_for("two no_client_cert failures", |m| {
                m.tls_failures_count(Role::Receive, TlsFailure::NoClientCert) == 2
            })
            .await;
        assert!(server.handler.seen().is_empty());
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn certificate_from_another_ca_fails() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        assert_refused(&server, pki.client_config(Some(&pki.foreign), H1)).await;
        server
            .wait_for("an unknown_ca failure", |m| {
                m.tls_failures_count(Role::Receive, TlsFailure::UnknownCa) == 1
            })
            .await;
        assert!(server.handler.seen().is_empty());
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn expired_client_certificate_fails() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        assert_refused(&server, pki.client_config(Some(&pki.expired), H1)).await;
        server
            .wait_for("an expired failure", |m| {
                m.tls_failures_count(Role::Receive, TlsFailure::Expired) == 1
            })
            .await;
        assert!(server.handler.seen().is_empty());
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn subject_not_allowed_is_closed_after_the_handshake() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        // The certificate is good (same CA): the handshake completes, then the server closes.
        let tls = server
            .connect(pki.client_config(Some(&pki.stranger), H1))
            .await
            .unwrap();
        let mut c = Http::new(tls);
        let _ = c.stream.write_all(&server.mirth(MESSAGE)).await;
        match c.read_to_close().await {
            Ok(bytes) => assert!(bytes.is_empty()),
            Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::TimedOut),
        }
        server
            .wait_for("a subject rejection", |m| {
                m.rejected_count(Role::Receive, reject::SUBJECT) == 1
            })
            .await;
        assert!(server.handler.seen().is_empty());
        // The allowed client still gets in; by DNS name too.
        assert_eq!(
            exchange(&server, &pki, &server.mirth(MESSAGE)).await.status,
            200
        );
        server.stop().await.unwrap();

        let server = TestServer::start(&pki, |s| {
            s.allowed_clients = vec![format!("DNS:{}", CLIENT_CN.to_uppercase())];
        })
        .await;
        assert_eq!(
            exchange(&server, &pki, &server.mirth(MESSAGE)).await.status,
            200
        );
        assert_eq!(
            server.handler.seen()[0].peer_subject,
            format!("DNS:{}", CLIENT_CN.to_uppercase())
        );
        server.stop().await.unwrap();
    })
    .await;
}

/// Mirth's request on a fresh mTLS connection from 127.0.0.2 (loopback, another address).
async fn exchange_from_127_0_0_2(server: &TestServer, pki: &Pki) -> RawResponse {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let tls = tls_over(tcp, "localhost", pki.client_config(Some(&pki.client), H1))
        .await
        .unwrap();
    let mut c = Http::new(tls);
    c.send(&server.mirth(MESSAGE)).await.unwrap();
    c.read_response().await.unwrap()
}

#[tokio::test]
async fn ip_outside_the_allowlist_is_closed_before_tls() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |s| {
            s.allowed_ips = vec!["127.0.0.2/32".parse().unwrap()];
        })
        .await;
        // From 127.0.0.1, without sending anything: the server closes without a byte.
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("the server did not close the connection")
        {
            Ok(n) => assert_eq!(n, 0, "server sent {:?}", &buf[..n]),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                ),
                "{e}"
            ),
        }
        // A TLS client gets no ServerHello.
        assert!(
            server
                .connect(pki.client_config(Some(&pki.client), H1))
                .await
                .is_err()
        );
        server
            .wait_for("two ip rejections", |m| {
                m.rejected_count(Role::Receive, reject::IP) == 2
            })
            .await;
        // No handshake was attempted, so no TLS failure was counted.
        assert!(
            TlsFailure::ALL
                .iter()
                .all(|r| server.metrics.tls_failures_count(Role::Receive, *r) == 0)
        );

        // From 127.0.0.2 the same client is served.
        assert_eq!(exchange_from_127_0_0_2(&server, &pki).await.status, 200);
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn idle_connections_from_one_address_leave_room_for_another() {
    bounded(async {
        let pki = Pki::new();
        // Every idle connection stays in the handshake for the whole test.
        let server = TestServer::start(&pki, |s| {
            s.handshake_timeout = Duration::from_secs(25);
        })
        .await;
        let per_ip = hl7gw_runtime::config::defaults::CONNECTIONS_PER_IP as usize;
        // 300 raw TCP connections from 127.0.0.1 that never send a byte (331 descriptors
        // with the server's side: well under `ulimit -n 1024`).
        let mut idle = Vec::new();
        for _ in 0..300 {
            idle.push(TcpStream::connect(server.addr).await.unwrap());
        }
        server
            .wait_for("the connections past the address's share refused", |m| {
                m.rejected_count(Role::Receive, reject::PER_IP) == (300 - per_ip) as u64
            })
            .await;
        assert_eq!(
            server
                .metrics
                .rejected_count(Role::Receive, reject::CAPACITY),
            0
        );
        assert_eq!(
            server
                .metrics
                .rejected_count(Role::Receive, reject::HANDSHAKES),
            0
        );

        // A real mTLS request from 127.0.0.2 still gets its ACK.
        let r = exchange_from_127_0_0_2(&server, &pki).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, ACK);

        // Once the idle connections go, their address is served again.
        drop(idle);
        let mut served = false;
        for _ in 0..100 {
            if let Ok(tls) = server
                .connect(pki.client_config(Some(&pki.client), H1))
                .await
            {
                let mut c = Http::new(tls);
                c.send(&server.mirth(MESSAGE)).await.unwrap();
                served = c.read_response().await.map(|r| r.status).ok() == Some(200);
                if served {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(served, "127.0.0.1 was not served again");
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn bodies_in_flight_share_one_memory_budget() {
    bounded(async {
        let pki = Pki::new();
        // 64 KiB bodies at most, 100 KiB of them at once.
        let server = TestServer::start(&pki, |s| s.body_memory = 100 * 1024).await;
        let sized = |start: &[u8]| {
            let mut body = start.to_vec();
            body.resize(60 * 1024, b'x');
            body
        };
        // The first 60 KiB body is held by the handler until the test releases it.
        let mut first = client(&server, &pki).await;
        first.send(&server.hapi(&sized(b"HOLD"))).await.unwrap();
        server.wait_seen(1).await;

        // A second one with Content-Length: 503 with Retry-After, before its body is read.
        let mut c = client(&server, &pki).await;
        c.send(b"POST /hl7 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 61440\r\nExpect: 100-continue\r\n\r\n")
            .await
            .unwrap();
        let r = c.read_response().await.unwrap();
        assert_eq!(r.status_line, "HTTP/1.1 503 Service Unavailable");
        assert_eq!(r.header("retry-after"), Some("5"));
        assert_eq!(r.header("connection"), Some("close"));
        assert!(r.body_text().contains("memory limit"), "{}", r.body_text());

        // Chunked, without a declared length: 503 once its bytes pass what is left.
        let mut c = client(&server, &pki).await;
        c.send(b"POST /hl7 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        // 40 KiB are left: the fifth 10 KiB chunk does not fit.
        for _ in 0..5 {
            let mut chunk = b"2800\r\n".to_vec();
            chunk.extend_from_slice(&[b'x'; 0x2800]);
            chunk.extend_from_slice(b"\r\n");
            c.send(&chunk).await.unwrap();
        }
        let r = c.read_response().await.unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("5"));
        assert_eq!(server.handler.seen().len(), 1, "neither refused body reached the handler");

        // The held message is answered; its bytes go back to the budget.
        server.handler.release.add_permits(1);
        assert_eq!(first.read_response().await.unwrap().status, 200);
        let r = exchange(&server, &pki, &server.hapi(&sized(b"MSH"))).await;
        assert_eq!(r.status, 200);
        assert_eq!(server.metrics.responses_count(503), 2);
        server.stop().await.unwrap();
    })
    .await;
}

/// A TLS 1.1 ClientHello (client_version 3.2, no supported_versions extension), written by
/// hand because rustls cannot speak TLS 1.1. It offers what the server would otherwise accept
/// (a GCM suite, signature algorithms, groups), so that the version alone is what fails.
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    // ECDHE-ECDSA-AES128-GCM-SHA256, ECDHE-ECDSA-AES128-SHA (the TLS 1.1 one).
    body.extend_from_slice(&[0x00, 0x04, 0xC0, 0x2B, 0xC0, 0x09]);
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let extensions: &[u8] = &[
        0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08, 0x04, // signature_algorithms
        0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17, // supported_groups
        0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, // ec_point_formats: uncompressed
    ];
    body.extend_from_slice(&u16::try_from(extensions.len()).unwrap().to_be_bytes());
    body.extend_from_slice(extensions);
    let mut handshake = vec![0x01, 0x00];
    handshake.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend(handshake);
    record
}

#[tokio::test]
async fn tls11_and_older_are_refused() {
    bounded(async {
        assert_eq!(
            hl7gw_runtime::tls::PROTOCOL_VERSIONS
                .iter()
                .map(|v| v.version)
                .collect::<Vec<_>>(),
            [
                rustls::ProtocolVersion::TLSv1_3,
                rustls::ProtocolVersion::TLSv1_2
            ]
        );
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(&tls11_client_hello()).await.unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut reply))
            .await
            .expect("the server did not close the connection");
        // An alert record (0x15), fatal (2), protocol_version (70); never a ServerHello.
        assert_eq!(reply.first(), Some(&0x15), "{reply:02X?}");
        assert_eq!(&reply[5..7], &[2, 70], "{reply:02X?}");
        server
            .wait_for("a protocol failure", |m| {
                m.tls_failures_count(Role::Receive, TlsFailure::Protocol) == 1
            })
            .await;
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn unknown_path_is_404() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        let r = exchange(
            &server,
            &pki,
            &simple_post("/other", Some("text/plain"), MESSAGE, &[]),
        )
        .await;
        r.assert_http11_with_reason();
        assert_eq!(r.status_line, "HTTP/1.1 404 Not Found");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert!(r.body_text().contains("/hl7"), "{}", r.body_text());
        assert_eq!(r.header("connection"), Some("close"));
        assert!(server.handler.seen().is_empty());
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn other_methods_are_405_with_allow() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        for method in ["GET", "PUT", "DELETE", "OPTIONS"] {
            let request =
                format!("{method} /hl7 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
            let r = exchange(&server, &pki, request.as_bytes()).await;
            assert_eq!(r.status_line, "HTTP/1.1 405 Method Not Allowed");
            assert_eq!(r.header("allow"), Some("POST"));
            assert!(r.body_text().contains(method));
        }
        assert_eq!(server.metrics.responses_count(405), 4);
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn too_large_by_content_length_is_413_without_reading() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |s| s.max_body = 1000).await;
        // Headers only: the server answers without waiting for the body.
        let mut c = client(&server, &pki).await;
        c.send(b"POST /hl7 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 5000\r\n\r\n")
            .await.unwrap();
        let r = c.read_response().await.unwrap();
        assert_eq!(r.status_line, "HTTP/1.1 413 Payload Too Large");
        assert!(r.body_text().contains("1000"));
        assert_eq!(r.header("connection"), Some("close"));
        // With Expect: 100-continue, no 100 comes first: the client never sends the body.
        let mut c = client(&server, &pki).await;
        c.send(b"POST /hl7 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
            .await.unwrap();
        let r = c.read_response().await.unwrap();
        assert_eq!(r.status, 413);
        // Exactly at the limit is fine.
        let body = [b'x'; 1000];
        let r = exchange(&server, &pki, &simple_post("/hl7", Some("text/plain"), &body, &[])).await;
        assert_eq!(r.status, 200);
        assert!(server.handler.seen().len() == 1);
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn too_large_chunked_body_is_413() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |s| s.max_body = 1000).await;
        let mut c = client(&server, &pki).await;
        c.send(b"POST /hl7 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await.unwrap();
        // 600 + 600 bytes: over the limit before the body ends (never ended here).
        for _ in 0..2 {
            let mut chunk = b"258\r\n".to_vec();
            chunk.extend_from_slice(&[b'x'; 600]);
            chunk.extend_from_slice(b"\r\n");
            c.send(&chunk).await.unwrap();
        }
        let r = c.read_response().await.unwrap();
        assert_eq!(r.status_line, "HTTP/1.1 413 Payload Too Large");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(server.handler.seen().is_empty());
        // A chunked body within the limit is fine.
        let mut c = client(&server, &pki).await;
        let mut request = b"POST /hl7 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        request.extend_from_slice(format!("{:x}\r\n", MESSAGE.len()).as_bytes());
        request.extend_from_slice(MESSAGE);
        request.extend_from_slice(b"\r\n0\r\n\r\n");
        c.send(&request).await.unwrap();
        assert_eq!(c.read_response().await.unwrap().status, 200);
        assert_eq!(server.handler.seen()[0].body, MESSAGE);
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn an_hl7_body_is_read_whatever_its_content_type_and_the_odd_type_counted() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        // InterSystems and BizTalk adapters labelling HL7 as HTML or XML.
        for ct in ["text/html", "text/xml; charset=utf-8", "image/png"] {
            let r = exchange(&server, &pki, &simple_post("/hl7", Some(ct), MESSAGE, &[])).await;
            assert_eq!(r.status_line, "HTTP/1.1 200 OK", "{ct}: {}", r.body_text());
            // Answered as a request without Content-Type.
            assert_eq!(r.header("content-type"), Some("text/plain; charset=UTF-8"));
            assert_eq!(r.body, ACK);
        }
        let seen = server.handler.seen();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].media_type, None);
        assert_eq!(seen[1].charset, Some(Charset::Utf8));
        assert_eq!(server.metrics.unexpected_content_type_count("text/html"), 1);
        assert_eq!(server.metrics.unexpected_content_type_count("text/xml"), 1);
        assert_eq!(server.metrics.unexpected_content_type_count("other"), 1);
        // The HL7 types are not counted.
        exchange(&server, &pki, &server.mirth(MESSAGE)).await;
        assert!(
            !server
                .metrics
                .render()
                .contains("hl7gw_unexpected_content_type_total{media_type=\"text/plain\"}")
        );
        // Not HL7 either (or empty): still 415, and nothing counted.
        for body in [&b"NOT-HL7 <html></html>"[..], b"\r\n"] {
            let r = exchange(
                &server,
                &pki,
                &simple_post("/hl7", Some("text/html"), body, &[]),
            )
            .await;
            assert_eq!(r.status_line, "HTTP/1.1 415 Unsupported Media Type");
            assert!(r.body_text().contains("not HL7"), "{}", r.body_text());
        }
        assert_eq!(server.metrics.unexpected_content_type_count("text/html"), 1);
        // A charset that is not supported is never guessed, whatever the type.
        let r = exchange(
            &server,
            &pki,
            &simple_post("/hl7", Some("text/html; charset=koi8-r"), MESSAGE, &[]),
        )
        .await;
        assert_eq!(r.status_line, "HTTP/1.1 415 Unsupported Media Type");
        assert_eq!(server.handler.seen().len(), 5);
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn unsupported_content_type_or_charset_is_415_when_strict() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |s| {
            s.request_content_type = RequestContentType::Strict;
        })
        .await;
        for ct in [
            "application/json",
            "text/html; charset=utf-8",
            "application/hl7-v2+xml",
            "text/plain; charset=koi8-r",
        ] {
            let r = exchange(&server, &pki, &simple_post("/hl7", Some(ct), MESSAGE, &[])).await;
            assert_eq!(r.status_line, "HTTP/1.1 415 Unsupported Media Type", "{ct}");
            assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
            assert!(
                r.body_text().contains("application/hl7-v2") || r.body_text().contains("UTF-8"),
                "{}",
                r.body_text()
            );
        }
        assert!(server.handler.seen().is_empty());
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn expect_100_continue_gets_100_before_the_body() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        let mut c = client(&server, &pki).await;
        // BizTalk (.NET) style: headers with Expect, then wait.
        c.send(
            format!(
                "POST /hl7 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: Keep-Alive\r\n\r\n",
                MESSAGE.len()
            )
            .as_bytes(),
        )
        .await.unwrap();
        let interim = c.read_response().await.unwrap();
        assert_eq!(interim.status_line, "HTTP/1.1 100 Continue");
        c.send(MESSAGE).await.unwrap();
        let r = c.read_response().await.unwrap();
        assert_eq!(r.status_line, "HTTP/1.1 200 OK");
        assert_eq!(r.body, ACK);
        // The connection stays usable.
        c.send(&server.mirth(MESSAGE)).await.unwrap();
        assert_eq!(c.read_response().await.unwrap().status, 200);
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn mllp_framing_is_removed_and_line_endings_pass_through() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        let mut framed = vec![0x0B];
        framed.extend_from_slice(MESSAGE);
        framed.extend_from_slice(&[0x1C, 0x0D]);
        let lf: Vec<u8> = MESSAGE
            .iter()
            .map(|&b| if b == b'\r' { b'\n' } else { b })
            .collect();
        let crlf: Vec<u8> = MESSAGE
            .iter()
            .flat_map(|&b| {
                if b == b'\r' {
                    vec![b'\r', b'\n']
                } else {
                    vec![b]
                }
            })
            .collect();
        let mut c = client(&server, &pki).await;
        for body in [&framed, &lf, &crlf] {
            c.send(&simple_post(
                "/hl7",
                Some("text/plain; charset=latin1"),
                body,
                &[],
            ))
            .await
            .unwrap();
            assert_eq!(c.read_response().await.unwrap().status, 200);
        }
        let seen = server.handler.seen();
        assert_eq!(seen[0].body, MESSAGE);
        assert_eq!(seen[1].body, lf);
        assert_eq!(seen[2].body, crlf);
        // Framing alone is an empty body.
        c.send(&simple_post("/hl7", Some("text/plain"), b"\x0b\x1c\r", &[]))
            .await
            .unwrap();
        let r = c.read_response().await.unwrap();
        assert_eq!(r.status, 400);
        assert!(r.body_text().contains("empty"));
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn charset_parameter_reaches_the_handler_and_the_response() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        let mut c = client(&server, &pki).await;
        let cases = [
            ("text/plain; charset=ISO-8859-1", Some(Charset::Latin1), "text/plain; charset=ISO-8859-1"),
            // InterSystems' default spelling.
            ("application/hl7-v2; charset=latin1", Some(Charset::Latin1), "application/hl7-v2; charset=ISO-8859-1"),
            ("application/hl7-v2; charset=US-ASCII", Some(Charset::Ascii), "application/hl7-v2; charset=US-ASCII"),
            ("application/hl7-v2", None, "application/hl7-v2; charset=UTF-8"),
        ];
        let latin1_body = b"MSH|^~\\&|TIE|TRUST|GW|EMS|20260101||ADT^A28|1|T|2.4\rPID|1||1^^^T^MR||M\xdcLLER^J\xc9R\xd4ME\r";
        for (ct, charset, response_ct) in cases {
            c.send(&simple_post("/hl7", Some(ct), latin1_body, &[])).await.unwrap();
            let r = c.read_response().await.unwrap();
            assert_eq!(r.status, 200, "{ct}");
            assert_eq!(r.header("content-type"), Some(response_ct), "{ct}");
            let seen = server.handler.seen();
            let last = seen.last().unwrap();
            assert_eq!(last.charset, charset, "{ct}");
            assert_eq!(last.body, latin1_body, "bytes pass through unchanged");
        }
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn response_content_type_follows_the_request_or_the_setting() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        let mut c = client(&server, &pki).await;
        for (request_ct, response_ct) in [
            (Some("text/plain"), "text/plain; charset=UTF-8"),
            (
                Some("application/hl7-v2"),
                "application/hl7-v2; charset=UTF-8",
            ),
            (
                Some("Application/HL7-V2+ER7"),
                "application/hl7-v2+er7; charset=UTF-8",
            ),
            (
                Some("x-application/hl7-v2+er7"),
                "x-application/hl7-v2+er7; charset=UTF-8",
            ),
            // No Content-Type (InterSystems' default): accepted, answered as text/plain.
            (None, "text/plain; charset=UTF-8"),
        ] {
            c.send(&simple_post("/hl7", request_ct, MESSAGE, &[]))
                .await
                .unwrap();
            let r = c.read_response().await.unwrap();
            assert_eq!(r.status, 200, "{request_ct:?}");
            assert_eq!(
                r.header("content-type"),
                Some(response_ct),
                "{request_ct:?}"
            );
        }
        assert_eq!(server.handler.seen().last().unwrap().media_type, None);
        server.stop().await.unwrap();

        let server = TestServer::start(&pki, |s| {
            s.response_content_type = ResponseContentType::Fixed(MediaType::Hl7V2);
        })
        .await;
        let r = exchange(&server, &pki, &server.mirth(MESSAGE)).await;
        assert_eq!(
            r.header("content-type"),
            Some("application/hl7-v2; charset=UTF-8")
        );
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn handler_outcomes_map_to_400_and_503_and_keep_the_connection() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        let mut c = client(&server, &pki).await;
        c.send(&server.mirth(b"NOT-HL7 at all")).await.unwrap();
        let r = c.read_response().await.unwrap();
        assert_eq!(r.status_line, "HTTP/1.1 400 Bad Request");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.body_text(), "no MSH segment at byte 0\n");
        assert_ne!(r.header("connection"), Some("close"));
        c.send(&server.mirth(b"UNAVAILABLE")).await.unwrap();
        let r = c.read_response().await.unwrap();
        assert_eq!(r.status_line, "HTTP/1.1 503 Service Unavailable");
        assert!(r.body_text().contains("retry"));
        c.send(&server.mirth(MESSAGE)).await.unwrap();
        assert_eq!(c.read_response().await.unwrap().status, 200);
        assert_eq!(server.metrics.responses_count(400), 1);
        assert_eq!(server.metrics.responses_count(503), 1);
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |s| {
            s.header_timeout = Duration::from_millis(300);
        })
        .await;
        let mut c = client(&server, &pki).await;
        c.send(b"POST /hl7 HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        match c.read_to_close().await {
            Ok(bytes) => assert!(bytes.is_empty()),
            Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::TimedOut),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn header_limit_does_not_cut_idle_keep_alive() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |s| {
            s.header_timeout = Duration::from_millis(200);
            s.idle_timeout = Duration::from_secs(30);
        })
        .await;
        let mut c = client(&server, &pki).await;
        c.send(&server.mirth(MESSAGE)).await.unwrap();
        assert_eq!(c.read_response().await.unwrap().status, 200);
        tokio::time::sleep(Duration::from_millis(800)).await;
        c.send(&server.mirth(MESSAGE)).await.unwrap();
        assert_eq!(c.read_response().await.unwrap().status, 200);
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn idle_connections_are_closed() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |s| {
            s.idle_timeout = Duration::from_millis(300);
        })
        .await;
        let mut c = client(&server, &pki).await;
        c.send(&server.mirth(MESSAGE)).await.unwrap();
        assert_eq!(c.read_response().await.unwrap().status, 200);
        let started = std::time::Instant::now();
        match c.read_to_close().await {
            Ok(bytes) => assert!(bytes.is_empty()),
            Err(e) => assert_ne!(e.kind(), std::io::ErrorKind::TimedOut),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        server
            .wait_for("the connection to be closed", |m| m.open_connections() == 0)
            .await;
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn slow_body_is_408() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |s| {
            s.body_timeout = Duration::from_millis(300);
        })
        .await;
        let mut c = client(&server, &pki).await;
        c.send(b"POST /hl7 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nMSH|^~\\&|")
            .await.unwrap();
        let r = c.read_response().await.unwrap();
        assert_eq!(r.status_line, "HTTP/1.1 408 Request Timeout");
        assert_eq!(r.header("connection"), Some("close"));
        assert!(server.handler.seen().is_empty());
        server.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn shutdown_lets_a_request_in_progress_finish() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        let addr = server.addr;
        let mut c = client(&server, &pki).await;
        c.send(&server.mirth(b"SLOW MSH")).await.unwrap();
        // Wait until the handler has the request, then stop the server.
        for _ in 0..200 {
            if !server.handler.seen().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let stopping = tokio::spawn(server.stop());
        let r = c.read_response().await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, ACK);
        stopping.await.unwrap().unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");
    })
    .await;
}

async fn ops_get(addr: std::net::SocketAddr, request: &str) -> RawResponse {
    let mut c = Http::new(TcpStream::connect(addr).await.unwrap());
    c.send(request.as_bytes()).await.unwrap();
    c.read_response().await.unwrap()
}

#[tokio::test]
async fn operations_port_serves_health_and_metrics() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |_| {}).await;
        let healthy = Arc::new(AtomicBool::new(true));
        let flag = healthy.clone();
        let ops = OpsServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            server.metrics.clone(),
            move || flag.load(Ordering::SeqCst),
        )
        .await
        .unwrap();
        let ops_addr = ops.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let ops_task = tokio::spawn(ops.run(async move {
            let _ = stopped.await;
        }));

        let r = ops_get(ops_addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(r.status_line, "HTTP/1.1 200 OK");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body, serde_json::json!({"status": "ok", "problems": []}));
        healthy.store(false, Ordering::SeqCst);
        let r = ops_get(ops_addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(r.status_line, "HTTP/1.1 503 Service Unavailable");
        assert!(r.body_text().contains(r#""status":"unavailable""#));

        // Some traffic: one ACK, one 404, one TLS failure.
        assert_eq!(
            exchange(&server, &pki, &server.hapi(MESSAGE)).await.status,
            200
        );
        assert_eq!(
            exchange(&server, &pki, &simple_post("/nope", None, MESSAGE, &[]))
                .await
                .status,
            404
        );
        assert_refused(&server, pki.client_config(Some(&pki.foreign), H1)).await;
        server
            .wait_for("the TLS failure", |m| {
                m.tls_failures_count(Role::Receive, TlsFailure::UnknownCa) == 1
            })
            .await;

        let r = ops_get(ops_addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let text = r.body_text();
        for expected in [
            "hl7gw_messages_total{type=\"ADT^A28\",ack=\"AA\"} 1\n",
            "hl7gw_http_responses_total{status=\"200\"} 1\n",
            "hl7gw_http_responses_total{status=\"404\"} 1\n",
            "hl7gw_tls_failures_total{listener=\"receive\",reason=\"unknown_ca\"} 1\n",
            "hl7gw_connections_rejected_total{listener=\"receive\",reason=\"ip\"} 0\n",
            "hl7gw_request_seconds_count 2\n",
            "hl7gw_store_errors_total 0\n",
            "# TYPE hl7gw_request_seconds histogram\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        // No message content in the metrics.
        assert!(!text.contains("SMITH"));

        let r = ops_get(
            ops_addr,
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert_eq!(r.status, 405);
        let r = ops_get(ops_addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(r.status, 404);

        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(15), ops_task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        server.stop().await.unwrap();
    })
    .await;
}

/// A request body that sends `first`, then fails after `after`: hyper's HTTP/2 client then
/// resets the stream (RST_STREAM), as a client abandoning an upload does.
struct ResetAfter {
    first: Option<Bytes>,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl hyper::body::Body for ResetAfter {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        if let Some(first) = self.first.take() {
            return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(first))));
        }
        self.sleep
            .as_mut()
            .poll(cx)
            .map(|()| Some(Err(std::io::Error::other("the client gives up"))))
    }
}

/// An HTTP/2 connection (ALPN `h2` only) and the task driving it.
async fn h2_client<B>(
    server: &TestServer,
    pki: &Pki,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<()>,
)
where
    B: hyper::body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls = server
        .connect(pki.client_config(Some(&pki.client), &[b"h2"]))
        .await
        .unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, driver)
}

#[tokio::test]
async fn a_client_that_goes_away_is_logged_as_cancelled_not_as_a_response() {
    bounded(async {
        let pki = Pki::new();
        let server = TestServer::start(&pki, |s| s.http2 = true).await;

        // HTTP/1.1: the connection closes with part of the body sent.
        let mut c = client(&server, &pki).await;
        c.send(b"POST /hl7 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\nMSH|^~\\&|")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.stream.shutdown().await.unwrap();
        drop(c);
        server
            .wait_for("a body cancelled on HTTP/1.1", |m| m.cancelled_count("body") == 1)
            .await;

        // HTTP/1.1: the connection closes while the message is processed (hyper drops the
        // request's future when it reads the end of the connection).
        let mut c = client(&server, &pki).await;
        c.send(&server.mirth(b"SLOW MSH|^~\\&|")).await.unwrap();
        server
            .wait_for("the slow request to reach the handler", |_| {
                server.handler.seen().len() == 1
            })
            .await;
        c.stream.shutdown().await.unwrap();
        drop(c);
        server
            .wait_for("a request cancelled on HTTP/1.1 while processed", |m| {
                m.cancelled_count("processing") == 1
            })
            .await;

        // HTTP/2: RST_STREAM while the body arrives.
        let url = format!("https://localhost:{}/hl7", server.addr.port());
        let (mut sender, driver) = h2_client(&server, &pki).await;
        let request = hyper::Request::post(&url)
            .header("content-type", "text/plain")
            .body(ResetAfter {
                first: Some(Bytes::from_static(b"MSH|^~\\&|")),
                sleep: Box::pin(tokio::time::sleep(Duration::from_millis(200))),
            })
            .unwrap();
        assert!(sender.send_request(request).await.is_err());
        server
            .wait_for("a body cancelled on HTTP/2", |m| m.cancelled_count("body") == 2)
            .await;
        drop(sender);
        driver.await.unwrap();

        // HTTP/2: RST_STREAM (CANCEL) while the message is processed. The processing
        // finishes; only the answer is lost.
        let (mut sender, driver) = h2_client(&server, &pki).await;
        let request = hyper::Request::post(&url)
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from_static(b"SLOW MSH|^~\\&|")))
            .unwrap();
        let waiting = tokio::spawn(async move {
            let _ = sender.send_request(request).await;
        });
        server
            .wait_for("the slow request to reach the handler", |_| {
                server.handler.seen().len() == 2
            })
            .await;
        waiting.abort();
        server
            .wait_for("a request cancelled on HTTP/2 while processed", |m| {
                m.cancelled_count("processing") == 2
            })
            .await;
        server
            .wait_for("the processing to finish", |_| {
                server.handler.finished.load(Ordering::SeqCst) == 2
            })
            .await;
        driver.abort();

        // Nothing of this was answered, so nothing is counted as a response.
        assert_eq!(server.metrics.responses_count(400), 0);
        assert_eq!(server.metrics.responses_count(200), 0);
        assert_eq!(server.metrics.requests_count(), 0);
        server.stop().await.unwrap();
    })
    .await;
}
