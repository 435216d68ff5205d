//! The vocabulary of the messaging models: which message types each model needs, in the
//! spec's HL7 version, and which it covers at all. `validate` checks a spec against it
//! (`model-missing-message`, `model-extra-message`); docs/spec.md shows it as a table.

use hl7gw_runtime::hl7::parse_version;

use super::MessagingModel;

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the customer's engine to EMS.
    Inbound,
    /// From EMS to the customer's engine.
    Outbound,
}

impl Direction {
    /// The spec's key for the direction.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }
}

/// One requirement: a message type, or one of several alternatives, in a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    /// The direction.
    pub direction: Direction,
    /// Any one of these satisfies it.
    pub alternatives: &'static [&'static str],
}

const fn needs(direction: Direction, alternatives: &'static [&'static str]) -> Requirement {
    Requirement {
        direction,
        alternatives,
    }
}

/// The first version whose orders model answers OMG^O19 with ORG^O20 instead of ORR^O02.
const ORG_FROM: (u32, u32, u32) = (2, 5, 0);

/// The answer to an order before v2.5 (ORM^O01's response).
const ORR: &str = "ORR^O02";
/// The answer to an order from v2.5 (OMG^O19's response).
const ORG: &str = "ORG^O20";

/// Messages every model may carry: patient administration in, the report out.
const COMMON: &[(Direction, &str)] = &[
    (Direction::Inbound, "ADT^A28"),
    (Direction::Inbound, "ADT^A31"),
    (Direction::Inbound, "ADT^A40"),
    (Direction::Outbound, "ORU^R01"),
];

impl MessagingModel {
    /// What the model needs in HL7 `version`. From v2.5 the orders model's answer to an
    /// order is ORG^O20 (OMG^O19's response); before, ORR^O02.
    pub fn requirements(self, version: &str) -> Vec<Requirement> {
        use Direction::{Inbound, Outbound};
        match self {
            Self::Basic => vec![
                needs(Inbound, &["ADT^A28"]),
                needs(Inbound, &["ADT^A31"]),
                needs(Inbound, &["ADT^A40"]),
                needs(Outbound, &["ORU^R01"]),
            ],
            Self::Scheduling => vec![needs(Inbound, &["SIU^S12"])],
            Self::Referral => vec![needs(Inbound, &["REF^I12"])],
            Self::Orders => vec![
                needs(Inbound, &["ORM^O01", "OMG^O19"]),
                needs(
                    Outbound,
                    if Self::order_answer(version) == ORG {
                        &[ORG]
                    } else {
                        &[ORR]
                    },
                ),
                needs(Outbound, &["ORU^R01"]),
            ],
        }
    }

    /// The orders model's order answer in HL7 `version`: ORG^O20 from v2.5, else ORR^O02.
    pub fn order_answer(version: &str) -> &'static str {
        if parse_version(version) >= ORG_FROM {
            ORG
        } else {
            ORR
        }
    }

    /// Whether the model covers `message_type` in `direction`: the patient administration
    /// messages and the report every model carries, and the model's own message codes
    /// (any SIU trigger for scheduling, REF for referral; ORM^O01 and OMG^O19 in, ORR^O02
    /// and ORG^O20 out for orders).
    pub fn covers(self, direction: Direction, message_type: &str) -> bool {
        if COMMON.contains(&(direction, message_type)) {
            return true;
        }
        let code = message_type.split('^').next().unwrap_or_default();
        match (self, direction) {
            (Self::Basic, _) => false,
            (Self::Scheduling, Direction::Inbound) => code == "SIU",
            (Self::Referral, Direction::Inbound) => code == "REF",
            (Self::Orders, Direction::Inbound) => matches!(message_type, "ORM^O01" | "OMG^O19"),
            (Self::Orders, Direction::Outbound) => [ORR, ORG].contains(&message_type),
            (Self::Scheduling | Self::Referral, Direction::Outbound) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_orders_answer_follows_the_version() {
        for (version, answer) in [
            ("2.3", "ORR^O02"),
            ("2.4", "ORR^O02"),
            ("2.5", "ORG^O20"),
            ("2.5.1", "ORG^O20"),
            ("2.8.2", "ORG^O20"),
        ] {
            assert_eq!(MessagingModel::order_answer(version), answer, "{version}");
            let outbound: Vec<_> = MessagingModel::Orders
                .requirements(version)
                .into_iter()
                .filter(|r| r.direction == Direction::Outbound)
                .flat_map(|r| r.alternatives.iter().copied())
                .collect();
            assert_eq!(outbound, [answer, "ORU^R01"], "{version}");
        }
    }

    #[test]
    fn each_model_covers_its_own_messages_and_the_common_ones() {
        use Direction::{Inbound, Outbound};
        assert!(MessagingModel::Basic.covers(Inbound, "ADT^A28"));
        assert!(!MessagingModel::Basic.covers(Inbound, "ORM^O01"));
        assert!(!MessagingModel::Basic.covers(Inbound, "SIU^S12"));
        assert!(MessagingModel::Orders.covers(Inbound, "OMG^O19"));
        assert!(MessagingModel::Orders.covers(Outbound, "ORG^O20"));
        assert!(MessagingModel::Orders.covers(Inbound, "ADT^A40"));
        assert!(!MessagingModel::Orders.covers(Inbound, "SIU^S12"));
        assert!(MessagingModel::Scheduling.covers(Inbound, "SIU^S14"));
        assert!(!MessagingModel::Referral.covers(Outbound, "REF^I12"));
    }
}
