//! Customer specs: the typed model, the value types written as text, and the loader that
//! reads YAML with a source position for every value.

pub mod loader;
pub mod model;
pub mod units;

pub use loader::{LoadedSpec, SourceMap, load_spec};
pub use model::*;
