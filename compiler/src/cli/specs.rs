//! Finding spec files from the command line: files as given, folders expanded to the
//! `*.yaml` / `*.yml` files directly inside them, in name order.

use std::path::PathBuf;

use super::Failure;

/// The spec files named by `inputs`.
pub fn spec_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, Failure> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let entries = std::fs::read_dir(input)
                .map_err(|e| Failure::Usage(format!("{}: {e}", input.display())))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(Failure::Usage(format!(
                    "{}: no *.yaml spec in this folder",
                    input.display()
                )));
            }
            files.extend(found);
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            return Err(Failure::Usage(format!(
                "{}: no such file or folder",
                input.display()
            )));
        }
    }
    Ok(files)
}
