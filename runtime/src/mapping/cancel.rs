//! Cancellations: an order message whose ORC-1 is `CA` (cancel) or `DC` (discontinue)
//! identifies an existing order instead of placing one. It carries the order's and the
//! patient's identity, not the whole ServiceRequest minimum dataset, so a binding that names
//! a cancel record maps it to that record, as `{"cancel": {...}}`; every other order control
//! maps to the binding's own record.

use super::json::record_to_json;
use super::record::Record;
use super::{MappingError, present, value_text};
use crate::hl7::{Message, Path};

/// ORC-1 order control codes that cancel or discontinue an existing order.
pub const CANCEL_CONTROLS: &[&str] = &["CA", "DC"];

/// The JSON key a cancellation's record is put under.
pub const CANCEL_KEY: &str = "cancel";

/// ORC-1 of the message's first ORC segment.
static ORDER_CONTROL: Path = Path::new("ORC", 1);

/// True when the first ORC's order control (ORC-1) is `CA` or `DC`.
pub fn is_cancellation(message: &Message<'_>) -> bool {
    present(message, &ORDER_CONTROL)
        .first()
        .and_then(|hit| value_text(hit).ok())
        .is_some_and(|control| CANCEL_CONTROLS.contains(&control.trim()))
}

/// Wraps a cancellation's record as `{"cancel": record}`.
pub fn cancel_json(record: serde_json::Value) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    object.insert(CANCEL_KEY.to_string(), record);
    serde_json::Value::Object(object)
}

/// Maps an order message: a cancellation (see [`is_cancellation`]) to the cancel record `C`,
/// as `{"cancel": {...}}`; any other to the order record `R`. Or every mapping error of the
/// record chosen.
pub fn map_order_to_json<R: Record, C: Record>(
    message: &Message<'_>,
) -> Result<serde_json::Value, Vec<MappingError>> {
    if is_cancellation(message) {
        Ok(cancel_json(record_to_json(&C::from_hl7(message)?)?))
    } else {
        record_to_json(&R::from_hl7(message)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(orc: &str) -> bool {
        let bytes = format!("MSH|^~\\&|TIE|TRUST|EMS|EMS|20260101||ORM^O01|1|T|2.4\r{orc}\r");
        Message::parse(bytes.as_bytes()).is_ok_and(|message| is_cancellation(&message))
    }

    #[test]
    fn ca_and_dc_cancel_other_controls_do_not() {
        assert!(control("ORC|CA|PLC-1"));
        assert!(control("ORC|DC|PLC-1"));
        assert!(!control("ORC|NW|PLC-1"));
        assert!(!control("ORC||PLC-1"));
        assert!(!control("PID|1"), "no ORC at all");
        assert_eq!(
            cancel_json(serde_json::json!({"placer_id": "P"})),
            serde_json::json!({"cancel": {"placer_id": "P"}})
        );
    }
}
