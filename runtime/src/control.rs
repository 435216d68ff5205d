//! How an operator asks a running gateway to reload its certificates, keys and CRLs
//! ([`crate::reload`]): SIGHUP, or `gw-<code> reload --env E`.
//!
//! `gw-<code> reload` talks to the gateway over a Unix socket next to the environment's store
//! ([`socket_path`]: `<store>.control`), created with mode 0600 so only the gateway's own user
//! (or root) can use it. It needs no port, works whatever address the operations port binds,
//! and, unlike SIGHUP, tells the operator the outcome: what is now served, or which file was
//! refused. A stale socket left by a killed gateway is noticed (nobody answers) and replaced.
//!
//! The protocol is one line each way: the command `reload`, then `ok` or `error` followed by
//! the text to show (which may run over several lines).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};

use crate::reload::TlsReloader;

/// The largest command line read, and how long a client gets to send it.
const MAX_COMMAND: usize = 64;
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `gw-<code> reload` waits for the gateway's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The control socket of the gateway whose store is `store`.
pub fn socket_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".control");
    PathBuf::from(name)
}

/// Why `gw-<code> reload` did not reload.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No gateway answers on the socket.
    #[error(
        "no running gateway answers on {}: {source} (is it serving this environment, with the same --store?)",
        path.display()
    )]
    Unreachable {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The gateway refused the new files and keeps the previous ones.
    #[error("the gateway refused the reload and keeps its previous certificates: {0}")]
    Refused(String),
}

impl ControlError {
    /// True when the gateway could not be reached (exit 2), false when it answered with a
    /// refusal (exit 1: the files are wrong).
    pub fn is_io(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// Asks the gateway whose store is `store` to reload; returns what it now serves.
#[cfg(unix)]
pub fn request_reload(store: &Path) -> Result<String, ControlError> {
    use std::io::{Read, Write};
    let path = socket_path(store);
    let unreachable = |source| ControlError::Unreachable {
        path: path.clone(),
        source,
    };
    let mut stream = std::os::unix::net::UnixStream::connect(&path).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(unreachable)?;
    stream.write_all(b"reload\n").map_err(unreachable)?;
    let mut answer = String::new();
    stream
        .take(1 << 20)
        .read_to_string(&mut answer)
        .map_err(unreachable)?;
    let (status, text) = answer.split_once(' ').unwrap_or((answer.trim(), ""));
    match status.trim() {
        "ok" => Ok(text.trim_end().to_owned()),
        "error" => Err(ControlError::Refused(text.trim_end().to_owned())),
        _ => Err(unreachable(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected answer {answer:?}"),
        ))),
    }
}

/// Without Unix sockets there is no `reload` command; SIGHUP does not exist either.
#[cfg(not(unix))]
pub fn request_reload(store: &Path) -> Result<String, ControlError> {
    Err(ControlError::Unreachable {
        path: socket_path(store),
        source: io::Error::new(io::ErrorKind::Unsupported, "needs Unix sockets"),
    })
}

/// Reloads on SIGHUP and on commands at the control socket of `store`, until `shutdown`
/// completes; the socket file is removed then. A socket that cannot be made is logged and
/// the gateway goes on (SIGHUP still works).
#[cfg(unix)]
pub async fn serve(reloader: TlsReloader, store: PathBuf, shutdown: impl Future<Output = ()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let path = socket_path(&store);
    let listener = match bind(&path) {
        Ok(l) => Some(l),
        Err(e) => {
            warn!(socket = %path.display(), error = %e, "control socket unavailable: `reload` will not reach this gateway; SIGHUP still reloads");
            None
        }
    };
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP");
            None
        }
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                let reloader = reloader.clone();
                let _ = tokio::task::spawn_blocking(move || reloader.reload_logged("SIGHUP")).await;
            }
            Some(accepted) = async { match listener.as_ref() { Some(l) => Some(l.accept().await), None => None } } => {
                match accepted {
                    Ok((stream, _)) => { tokio::spawn(answer(stream, reloader.clone())); }
                    Err(e) => {
                        warn!(error = %e, "control socket: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }
    if listener.is_some() {
        let _ = std::fs::remove_file(&path);
    }
}

/// Without Unix sockets and signals there is nothing to listen to.
#[cfg(not(unix))]
pub async fn serve(_reloader: TlsReloader, _store: PathBuf, shutdown: impl Future<Output = ()>) {
    shutdown.await;
}

/// Binds the socket, replacing a stale one; refuses when another gateway answers on it.
#[cfg(unix)]
fn bind(path: &Path) -> io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(found) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !found.file_type().is_socket() {
            // Never delete what is not ours: a file or a link where the socket belongs.
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "something other than a socket is there; remove it to enable `reload`",
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another gateway with the same store answers on it",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    info!(socket = %path.display(), "control socket listening (gw reload)");
    Ok(listener)
}

#[cfg(unix)]
async fn answer(stream: tokio::net::UnixStream, reloader: TlsReloader) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_COMMAND as u64));
    let command = tokio::time::timeout(COMMAND_TIMEOUT, reader.read_line(&mut line)).await;
    let reply = match command {
        Ok(Ok(_)) if line.trim() == "reload" => {
            match tokio::task::spawn_blocking(move || reloader.reload_logged("gw reload")).await {
                Ok(Ok(summary)) => format!("ok {summary}\n"),
                Ok(Err(e)) => format!("error {e}\n"),
                Err(_) => "error the reload task failed\n".to_owned(),
            }
        }
        Ok(Ok(_)) => format!(
            "error unknown command {:?} (expected `reload`)\n",
            line.trim()
        ),
        Ok(Err(e)) => format!("error {e}\n"),
        Err(_) => "error no command within 5 seconds\n".to_owned(),
    };
    let _ = write.write_all(reply.as_bytes()).await;
    let _ = write.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_sits_next_to_the_store() {
        assert_eq!(
            socket_path(Path::new("var/demo-test.sqlite")),
            PathBuf::from("var/demo-test.sqlite.control")
        );
    }

    #[test]
    fn reload_without_a_gateway_is_an_io_error_naming_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store.sqlite");
        let error = request_reload(&store).unwrap_err();
        assert!(error.is_io());
        assert!(
            error.to_string().contains("store.sqlite.control"),
            "{error}"
        );
        // A stale socket file (a killed gateway's) answers nobody either.
        std::fs::write(socket_path(&store), b"").unwrap();
        assert!(request_reload(&store).unwrap_err().is_io());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_socket_is_replaced_and_removed_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store.sqlite");
        // A socket left by a gateway that died: bound, nobody listening any more.
        drop(std::os::unix::net::UnixListener::bind(socket_path(&store)).unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(TlsReloader::default(), store.clone(), async move {
            let _ = stopped.await;
        }));
        let mut answer = None;
        for _ in 0..200 {
            let store = store.clone();
            let reply = tokio::task::spawn_blocking(move || request_reload(&store))
                .await
                .unwrap();
            if let Ok(text) = reply {
                answer = Some(text);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(answer.as_deref(), Some(""), "no sides, nothing to report");
        let _ = stop.send(());
        task.await.unwrap();
        assert!(!socket_path(&store).exists());
    }

    /// A regular file where the socket belongs is left alone (not deleted), and `reload`
    /// then finds no gateway.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_where_the_socket_belongs_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store.sqlite");
        std::fs::write(socket_path(&store), b"keep me").unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(TlsReloader::default(), store.clone(), async move {
            let _ = stopped.await;
        }));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let probe = store.clone();
        let reply = tokio::task::spawn_blocking(move || request_reload(&probe))
            .await
            .unwrap();
        assert!(reply.is_err(), "{reply:?}");
        let _ = stop.send(());
        task.await.unwrap();
        assert_eq!(std::fs::read(socket_path(&store)).unwrap(), b"keep me");
    }
}
