//! A small tmpfs for tests of a full disk: mounted on a fresh temporary directory and always
//! unmounted when dropped. Mounting needs privileges (root, or a user namespace); where the
//! mount is refused the test says it skipped, unless `HL7GW_REQUIRE_TMPFS=1` (CI) makes that
//! a failure.
//!
//! Only tests link this; a guard that cannot unmount is reported, hence `panic`.
#![allow(clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Set to `1` to fail, not skip, when a tmpfs cannot be mounted.
pub const REQUIRE: &str = "HL7GW_REQUIRE_TMPFS";

/// A mounted tmpfs; unmounted (then its directory removed) when dropped.
pub struct Tmpfs {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` reads it: `2m`), or returns `None`
    /// after printing why the test skips. Panics instead when [`REQUIRE`] is `1`.
    pub fn mount(size: &str, test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().to_path_buf();
        let result = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .output();
        let why = match result {
            Ok(out) if out.status.success() => {
                return Some(Self {
                    dir: Some(dir),
                    path,
                });
            }
            Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            Err(e) => format!("cannot run mount: {e}"),
        };
        if std::env::var(REQUIRE).is_ok_and(|v| v == "1") {
            panic!("{test}: a {size} tmpfs could not be mounted ({why}) and {REQUIRE}=1");
        }
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: a {size} tmpfs could not be mounted ({why}); run as root or set \
             {REQUIRE}=1 to require it"
        );
        None
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remounts read-only (or back read-write).
    pub fn remount(&self, read_only: bool) {
        let mode = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        let out = Command::new("mount")
            .args(["-o", mode])
            .arg(&self.path)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "mount -o {mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes zeros to `name` until the volume is full; returns how many bytes went in.
    pub fn fill(&self, name: &str) -> u64 {
        let mut file = std::fs::File::create(self.path.join(name)).expect("the filler file");
        let chunk = vec![0u8; 16 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n as u64,
            }
        }
        let _ = file.sync_all();
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success())
            // Still busy (a process that has not exited yet): detach it now; the kernel
            // frees it when the last file closes.
            || Command::new("umount")
                .arg("-l")
                .arg(&self.path)
                .status()
                .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = writeln!(
                std::io::stderr(),
                "could not unmount the test tmpfs at {}",
                self.path.display()
            );
            // Leave the directory alone: removing it would try to empty the mount.
            if let Some(dir) = self.dir.take() {
                let _ = dir.keep();
            }
        }
    }
}
