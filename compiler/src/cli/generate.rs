//! `hl7gw generate SPEC|DIR... [--out DIR] [--check]`: one gateway crate per spec, written to
//! `<out>/<code>/`; with `--check`, nothing is written and every stale file is named.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;

use super::Failure;
use super::specs::spec_files;
use crate::codegen::host::{HOST_DIR, generate_host};
use crate::codegen::{
    GeneratedCrate, SpecFailure, Staleness, compare, generate_file, generated_from, workspace_root,
    write,
};
use crate::diag::render_human;

/// Arguments of `hl7gw generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Spec files, or folders of them.
    #[arg(required = true, value_name = "SPEC|DIR")]
    specs: Vec<PathBuf>,

    /// The folder receiving one crate per spec, `<DIR>/<code>/`. Default: `generated/` in the
    /// workspace holding the first spec (the crates expect to live there: they link
    /// `../../runtime`).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// Write nothing; exit 1 naming every file that differs from what its spec generates.
    #[arg(long)]
    check: bool,
}

/// `path` relative to the current folder when it is inside it, for messages.
fn shown(path: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    let rel = cwd
        .as_deref()
        .and_then(|cwd| path.strip_prefix(cwd).ok())
        .filter(|p| !p.as_os_str().is_empty());
    rel.unwrap_or(path).display().to_string()
}

/// Runs `generate`.
pub fn run(args: &GenerateArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let files = spec_files(&args.specs)?;
    let mut crates: Vec<(PathBuf, GeneratedCrate)> = Vec::new();
    let mut failed = 0usize;
    for file in &files {
        match generate_file(file) {
            Ok(generated) => crates.push((file.clone(), generated)),
            Err(SpecFailure::Unreadable(message)) => return Err(Failure::Usage(message)),
            Err(SpecFailure::Invalid(diagnostics)) => {
                let read = |name: &str| std::fs::read_to_string(name).ok();
                eprint!(
                    "{}",
                    render_human(&diagnostics, &read, std::io::stderr().is_terminal())
                );
                failed += 1;
            }
            Err(SpecFailure::Codegen(e)) => {
                eprintln!("error: {}: {e}", file.display());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(Failure::Input(format!(
            "{failed} spec(s) have errors, so nothing was generated; run `hl7gw validate`"
        )));
    }
    for (i, (file, generated)) in crates.iter().enumerate() {
        if let Some((other, _)) = crates
            .iter()
            .take(i)
            .find(|(_, g)| g.code == generated.code)
        {
            return Err(Failure::Input(format!(
                "{} and {} both have customer code `{}`: each crate needs its own",
                other.display(),
                file.display(),
                generated.code
            )));
        }
    }
    if let Some((file, _)) = crates.iter().find(|(_, g)| g.code == HOST_DIR) {
        return Err(Failure::Input(format!(
            "{}: customer code `{HOST_DIR}` is taken by the host crate (generated/{HOST_DIR}/): choose another",
            file.display()
        )));
    }
    let out_dir = match (&args.out, files.first()) {
        (Some(dir), _) => dir.clone(),
        (None, Some(first)) => workspace_root(first)
            .map_or_else(|| PathBuf::from("generated"), |root| root.join("generated")),
        (None, None) => PathBuf::from("generated"),
    };
    let io = |e: std::io::Error| Failure::Usage(format!("writing output: {e}"));
    let host = generate_host(&host_members(&out_dir, &crates))
        .map_err(|e| Failure::Input(format!("the host crate: {e}")))?;
    let mut stale: Vec<String> = Vec::new();
    for generated in crates.iter().map(|(_, g)| g).chain([&host]) {
        let dir = out_dir.join(&generated.code);
        let fail = |e: std::io::Error| Failure::Usage(format!("{}: {e}", shown(&dir)));
        if args.check {
            for (name, how) in compare(&dir, generated).map_err(fail)? {
                let line = format!("{} ({})", shown(&dir.join(&name)), how.as_str());
                writeln!(out, "stale: {line}").map_err(io)?;
                stale.push(line);
            }
        } else {
            let changes = write(&dir, generated).map_err(fail)?;
            if changes.is_empty() {
                writeln!(out, "{}: up to date", shown(&dir)).map_err(io)?;
            }
            for (name, how) in changes {
                let verb = if how == Staleness::Extra {
                    "removed"
                } else {
                    "wrote"
                };
                writeln!(out, "{verb} {}", shown(&dir.join(&name))).map_err(io)?;
            }
        }
    }
    for orphan in orphans(&out_dir, &crates) {
        writeln!(out, "stale: {orphan}").map_err(io)?;
        stale.push(orphan);
    }
    if !stale.is_empty() {
        let specs: Vec<String> = args.specs.iter().map(|s| s.display().to_string()).collect();
        return Err(Failure::Input(format!(
            "{} generated file(s) are stale: run `hl7gw generate {}`{}",
            stale.len(),
            specs.join(" "),
            if args.check {
                ""
            } else {
                " after deleting the crates whose spec is gone"
            }
        )));
    }
    Ok(())
}

/// The gateway crates the host links: those generated now and the others already in
/// `out_dir` whose spec still exists (so generating one spec keeps the host whole), by code.
fn host_members(out_dir: &Path, crates: &[(PathBuf, GeneratedCrate)]) -> BTreeMap<String, String> {
    let mut members: BTreeMap<String, String> = crates
        .iter()
        .map(|(_, g)| (g.code.clone(), g.spec_path.clone()))
        .collect();
    let (Some(root), Ok(entries)) = (workspace_root(out_dir), std::fs::read_dir(out_dir)) else {
        return members;
    };
    for dir in entries.filter_map(Result::ok).map(|e| e.path()) {
        let Some(code) = dir.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if code == HOST_DIR || members.contains_key(&code) {
            continue;
        }
        if let Some(spec) = generated_from(&dir).filter(|spec| root.join(spec).exists()) {
            members.insert(code, spec);
        }
    }
    members
}

/// Crates in `out_dir` generated from a spec that no longer exists (only inside a workspace,
/// where the headers' spec paths can be resolved).
fn orphans(out_dir: &Path, crates: &[(PathBuf, GeneratedCrate)]) -> Vec<String> {
    let Some(root) = workspace_root(out_dir) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(out_dir) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|dir| {
            !crates
                .iter()
                .any(|(_, g)| dir.file_name().is_some_and(|n| *n == *g.code))
                && dir.file_name().is_none_or(|n| n != HOST_DIR)
        })
        .filter_map(|dir| {
            let spec = generated_from(&dir)?;
            (!root.join(&spec).exists()).then(|| {
                format!(
                    "{} (generated from {spec}, which is gone: delete the crate)",
                    shown(&dir)
                )
            })
        })
        .collect();
    found.sort();
    found
}
