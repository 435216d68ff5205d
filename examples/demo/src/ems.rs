//! EMS's side of the demo: the report EMS writes after the procedure, built as a typed
//! record and handed to the gateway's intake API; and the inbox API EMS pulls the Trust's
//! records from. Both APIs are plain HTTP on loopback.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use gw_demo::records::{Attachment, Report, ServiceRequest};
use hl7gw_runtime::hl7::timestamp::format_utc;
use hl7gw_runtime::hl7::{Message, ParseOptions};
use hl7gw_runtime::mapping::{CodeList, OutboundHeader};

use crate::http;

/// The report's PDF: one A4 page saying what it is (made for the demo; no real patient).
pub const REPORT_PDF: &[u8] = include_bytes!("report.pdf");

/// A built report, ready for the intake.
pub struct BuiltReport {
    /// The ORU^R01, ER7 bytes.
    pub message: Vec<u8>,
    /// Its MSH-10.
    pub control_id: String,
    /// The order it reports on (ORC-2 / OBR-2).
    pub placer_id: String,
    /// The procedure code.
    pub procedure: String,
}

/// The ORU^R01 reporting on `order` (an ORM^O01 the gateway accepted): the patient and the
/// order are read from it as the gateway reads them (the generated `ServiceRequest`), the
/// report is the generated `Report` record with the demo PDF, and `to_hl7` writes it.
pub fn report_for(order: &[u8]) -> Result<BuiltReport, String> {
    let message = Message::parse_with(order, &ParseOptions::lenient())
        .map_err(|e| format!("the order does not parse: {e}"))?;
    let request = ServiceRequest::from_hl7(&message).map_err(|errors| {
        let list: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        format!("the order does not map: {}", list.join("; "))
    })?;
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let report = Report {
        patient: request.patient,
        placer_id: request.placer_id.clone(),
        filler_id: Some(format!("EMS-{}", millis % 1_000_000)),
        procedure: request.procedure,
        pdf: Attachment::new("application/pdf", REPORT_PDF.to_vec()),
    };
    // The Trust's engine is the receiver: its application and facility as it named them.
    let receiving_application = message.header_text(3, 1).into_owned();
    let receiving_facility = message.header_text(4, 1).into_owned();
    let processing_id = message.processing_id().into_owned();
    let control_id = format!("ORU-{millis}");
    let stamp = format_utc(SystemTime::now());
    let header = OutboundHeader {
        sending_application: "EMS",
        sending_facility: "EMS-HOST",
        receiving_application: &receiving_application,
        receiving_facility: &receiving_facility,
        timestamp: &stamp,
        control_id: &control_id,
        processing_id: &processing_id,
        version: &gw_demo::SPEC.hl7_version,
    };
    let built = report
        .to_hl7(&header)
        .map_err(|e| format!("the report does not build: {e}"))?;
    Ok(BuiltReport {
        message: built,
        control_id,
        placer_id: request.placer_id,
        procedure: report.procedure.code().to_owned(),
    })
}

/// What the intake answered.
pub struct Queued {
    /// The queue id.
    pub id: i64,
    /// The HTTP status (201 new, 200 a repeat).
    pub status: u16,
}

/// `POST /outbound` with the message: queued once on disk.
pub async fn queue(intake: SocketAddr, message: &[u8]) -> Result<Queued, String> {
    let response = http::plain(
        intake,
        http::Call {
            method: "POST",
            path: "/outbound",
            content_type: Some("application/hl7-v2"),
            body: message.to_vec(),
        },
    )
    .await?;
    let json = response.json();
    match json.get("id").and_then(serde_json::Value::as_i64) {
        Some(id) if response.status < 300 => Ok(Queued {
            id,
            status: response.status,
        }),
        _ => Err(format!(
            "the intake answered HTTP {}: {}",
            response.status,
            json.get("error")
                .and_then(serde_json::Value::as_str)
                .map_or_else(
                    || String::from_utf8_lossy(&response.body).into_owned(),
                    str::to_owned
                )
        )),
    }
}

/// `GET /outbound/ID`: the queued message's state (`acknowledged`, `held`, …) and its last
/// response, as the intake reports them.
pub async fn queue_state(intake: SocketAddr, id: i64) -> Result<serde_json::Value, String> {
    let path = format!("/outbound/{id}");
    let response = http::plain(
        intake,
        http::Call {
            method: "GET",
            path: &path,
            content_type: None,
            body: Vec::new(),
        },
    )
    .await?;
    if response.status != 200 {
        return Err(format!("GET {path}: HTTP {}", response.status));
    }
    Ok(response
        .json()
        .get("message")
        .cloned()
        .unwrap_or(serde_json::Value::Null))
}

/// One record in the inbox.
pub struct InboxRecord {
    /// The inbox id.
    pub id: i64,
    /// `TYPE^TRIGGER`.
    pub message_type: String,
    /// MSH-10.
    pub control_id: String,
}

/// `GET /inbox`: the records EMS has not taken yet (the first page).
pub async fn inbox(addr: SocketAddr) -> Result<Vec<InboxRecord>, String> {
    let response = http::plain(
        addr,
        http::Call {
            method: "GET",
            path: "/inbox?limit=1000",
            content_type: None,
            body: Vec::new(),
        },
    )
    .await?;
    if response.status != 200 {
        return Err(format!("GET /inbox: HTTP {}", response.status));
    }
    let json = response.json();
    let items = json
        .get("items")
        .and_then(serde_json::Value::as_array)
        .ok_or("GET /inbox: the answer has no items")?;
    let text = |item: &serde_json::Value, key: &str| {
        item.get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Ok(items
        .iter()
        .map(|item| InboxRecord {
            id: item
                .get("id")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0),
            message_type: text(item, "message_type"),
            control_id: text(item, "control_id"),
        })
        .collect())
}
