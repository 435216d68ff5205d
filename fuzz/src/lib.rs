//! Shared invariant checks for the fuzz targets; see [`checks`].

pub mod checks;
pub mod spec_checks;
