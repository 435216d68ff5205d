//! End-to-end tests of hl7gw live in `tests/tests/`: they link the compiler, the generated
//! gateway crates and the runtime together. This library holds nothing; it exists so the
//! package builds.
