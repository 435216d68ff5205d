//! Customer specs: the typed model and the loader that reads YAML with a source position for
//! every value. The value types written as text (durations, sizes, failure policies) and the
//! rest of the vocabulary a spec shares with a gateway are the runtime's (`config`).

pub mod loader;
pub mod model;
pub mod models;
pub mod store;

pub use loader::{LoadedSpec, SourceMap, load_spec};
pub use model::*;
pub use models::{Direction, Requirement};
pub use store::{PostgresSetting, PostgresTlsSetting, ServerStore, SslMode, StoreSetting};

/// The Rust type name for a record name: `order_update` → `OrderUpdate`.
pub fn type_name(record: &str) -> String {
    record
        .split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}
