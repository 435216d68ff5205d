//! Fresh development certificates for the demo's TEST environment, planned from the spec
//! exactly as `hl7gw certs dev` plans them ([`hl7gw::certs::plans`]) and written into the
//! working folder instead of next to the spec:
//!
//! - the gateway's files, flat, under the names the spec gives them (`server.crt`,
//!   `server.key`, `trust-ca.crt`, `client.crt`, `client.key`), so the gateway finds them
//!   with `cert_dir` pointing at the folder;
//! - the Trust side's files in `trust/`: `tie-client.crt`/`.key` (the engine's client
//!   certificate), `tie-server.crt`/`.key` (its endpoint's server certificate), `ems-ca.crt`
//!   (to trust the gateway) and `trust-ca.key`.
//!
//! Every run replaces them (`--force`): the EMS CA's key is never kept, so a set is only
//! ever used by the run that made it.

use std::path::{Path, PathBuf};

use hl7gw::certs::{DEV_VALIDITY_DAYS, EnvCertPlan, make_dev_certs, plans};
use hl7gw::spec::loader::load_spec_text;

/// The demo customer's spec, as the generated gateway was generated from it.
const SPEC: &str = include_str!("../../../specs/demo.yaml");
const SPEC_PATH: &str = "specs/demo.yaml";

/// The environment the demo runs.
pub const ENV: &str = "test";

/// Where the files went.
pub struct CertFiles {
    /// How many files were written.
    pub written: usize,
    /// The Trust engine's client certificate.
    pub tie_client_cert: PathBuf,
    /// Its key.
    pub tie_client_key: PathBuf,
    /// The Trust endpoint's server certificate.
    pub tie_server_cert: PathBuf,
    /// Its key.
    pub tie_server_key: PathBuf,
    /// The EMS CA (issues the gateway's server and client certificates).
    pub ems_ca: PathBuf,
    /// The gateway's client certificate.
    pub gateway_client_cert: PathBuf,
}

/// Makes the TEST environment's certificates in `dir` (gateway) and `dir/trust` (Trust).
pub fn make(dir: &Path) -> Result<CertFiles, String> {
    let loaded = load_spec_text(SPEC.to_owned(), Path::new(SPEC_PATH), SPEC_PATH).map_err(
        |diagnostics| {
            let first = diagnostics
                .first()
                .map(|d| d.summary.clone())
                .unwrap_or_default();
            format!("{SPEC_PATH} does not load: {first}")
        },
    )?;
    let plan = plans(&loaded)
        .map_err(|e| format!("{SPEC_PATH}: {e}"))?
        .into_iter()
        .find(|p| p.env == ENV)
        .ok_or_else(|| format!("{SPEC_PATH} has no {ENV} environment with TLS files"))?;
    let plan = into_folder(plan, dir);
    let send = plan
        .send
        .as_ref()
        .ok_or_else(|| format!("{SPEC_PATH}: the {ENV} environment sends nothing"))?;
    let gateway_client_cert = send.client_cert.clone();
    let peer = plan.peer_dir.clone();
    let today = time::OffsetDateTime::now_utc().date();
    let written = make_dev_certs(std::slice::from_ref(&plan), true, today, DEV_VALIDITY_DAYS)
        .map_err(|e| format!("development certificates: {e}"))?;
    Ok(CertFiles {
        written: written.len(),
        tie_client_cert: peer.join("tie-client.crt"),
        tie_client_key: peer.join("tie-client.key"),
        tie_server_cert: peer.join("tie-server.crt"),
        tie_server_key: peer.join("tie-server.key"),
        ems_ca: peer.join("ems-ca.crt"),
        gateway_client_cert,
    })
}

/// The plan with every gateway file moved into `dir` under its own file name, and the Trust
/// side's into `dir/trust`.
fn into_folder(mut plan: EnvCertPlan, dir: &Path) -> EnvCertPlan {
    let flat = |path: &mut PathBuf| {
        if let Some(name) = path.file_name() {
            *path = dir.join(name);
        }
    };
    if let Some(r) = &mut plan.receive {
        flat(&mut r.server_cert);
        flat(&mut r.server_key);
        flat(&mut r.client_ca);
    }
    if let Some(s) = &mut plan.send {
        flat(&mut s.client_cert);
        flat(&mut s.client_key);
        flat(&mut s.server_ca);
    }
    if let Some(m) = &mut plan.ems {
        flat(&mut m.server_cert);
        flat(&mut m.server_key);
        flat(&mut m.client_ca);
        m.client_dir = dir.join("ems");
    }
    plan.peer_dir = dir.join("trust");
    plan
}
