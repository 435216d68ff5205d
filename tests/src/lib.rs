//! Support shared by the tests and benchmarks of every crate in the workspace. The end-to-end
//! tests themselves live in `tests/tests/` and `tests/benches/`.

pub mod bench;
pub mod child;
pub mod pki;
