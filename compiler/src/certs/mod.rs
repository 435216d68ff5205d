//! Certificates: the checks a spec's TLS files must pass before go-live ([`check`]) and the
//! development certificates `hl7gw certs dev` makes so a whole exchange can be tried on one
//! machine ([`dev`]).
//!
//! Crypto is *ring* throughout, chosen explicitly with default features off (rcgen's default
//! would pull aws-lc-rs, and two providers in one build panic). Certificates are read with
//! `x509-parser`, chains verified with `rustls-webpki` exactly as the gateway's TLS stack will
//! verify them at run time, and public keys are matched to private keys by reading the key
//! structures with x509-parser's DER reader (`keys.rs`), so that RSA keys *ring* refuses
//! (under 2048 bits) and PKCS#1 / SEC1 files still get a precise answer.

pub mod check;
pub mod dev;
mod keys;
mod load;
mod plan;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use check::{
    BundleToCheck, CertSummary, EXPIRY_WARNING_DAYS, Finding, MIN_RSA_BITS, Severity, SubjectNames,
    Usage, Which, check_bundle, check_ca, check_crl, subject_names, summarize,
};
pub use dev::{
    DEV_VALIDITY_DAYS, EmsPlan, EnvCertPlan, ReceivePlan, SendPlan, WrittenFile, make_dev_certs,
};
pub use load::{read_certificates, read_private_key};
pub use plan::{PlanError, plans};

/// Why a certificate operation could not be done at all (as opposed to a [`Finding`] about
/// a file that was read).
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The file does not exist.
    #[error("{} does not exist", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("{} cannot be read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but does not hold what it should.
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What it holds instead.
        message: String,
    },
    /// Bytes handed over as a certificate are not one.
    #[error("not a valid X.509 certificate: {message}")]
    NotACertificate {
        /// The parser's reason.
        message: String,
    },
    /// `certs dev` would replace files that already exist.
    #[error(
        "these files already exist and were left alone (nothing was written; use --force to replace them): {}",
        list_paths(paths)
    )]
    WouldOverwrite {
        /// The files that exist.
        paths: Vec<PathBuf>,
    },
    /// Two different certificates or keys would be written to one path.
    #[error("{} is named for two different certificates or keys ({first} and {second}); give each its own file", path.display())]
    Conflict {
        /// The path named twice.
        path: PathBuf,
        /// What the first use is.
        first: String,
        /// What the second use is.
        second: String,
    },
    /// rcgen could not make a certificate or key.
    #[error("cannot make the {what}: {message}")]
    Generate {
        /// Which certificate or key.
        what: String,
        /// rcgen's reason.
        message: String,
    },
    /// Writing an output file or creating its directory failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl CertError {
    /// The file the error is about, when there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            CertError::Missing { path }
            | CertError::Read { path, .. }
            | CertError::Invalid { path, .. }
            | CertError::Conflict { path, .. }
            | CertError::Write { path, .. } => Some(path),
            CertError::NotACertificate { .. }
            | CertError::WouldOverwrite { .. }
            | CertError::Generate { .. } => None,
        }
    }
}
