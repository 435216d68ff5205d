//! The store holds patient data: its file and SQLite's `-wal` and `-shm` beside it are for
//! the gateway's user alone (0600). New files are created so; an existing file that group
//! or others may read (copied in, restored from a backup, made by hand) is tightened at
//! open, and a file that cannot be tightened (owned by another user, a read-only mount)
//! refuses to open rather than serve with its data readable.

use std::path::{Path, PathBuf};

use crate::store::StoreError;

/// The files SQLite keeps for one database: the file, then its WAL and shared memory.
fn companions(path: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [path.to_path_buf(), with("-wal"), with("-shm")]
}

/// Tightens the store file and its `-wal`/`-shm` (those that exist) to 0600.
#[cfg(unix)]
pub(super) fn tighten(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    for file in companions(path) {
        let metadata = match std::fs::metadata(&file) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(StoreError::Io { path: file, source }),
        };
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            continue;
        }
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700)) {
            Ok(()) => tracing::warn!(
                file = %file.display(),
                was = format!("{mode:04o}"),
                now = format!("{:04o}", mode & 0o700),
                "store file was readable by group or others; permissions tightened"
            ),
            Err(source) => {
                return Err(StoreError::LoosePermissions {
                    path: file,
                    mode,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// No Unix permissions to tighten.
#[cfg(not(unix))]
pub(super) fn tighten(_path: &Path) -> Result<(), StoreError> {
    Ok(())
}
