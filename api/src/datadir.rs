//! The data directory: created on first start and locked for the life of
//! the process, so a second `nodai serve` on it fails at once instead of
//! corrupting what the first one writes.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("another nodai process{} is already using the data dir {}; stop it or choose another --data-dir", pid.as_ref().map(|p| format!(" (pid {p})")).unwrap_or_default(), path.display())]
    Locked { path: PathBuf, pid: Option<String> },
    #[error("cannot use the data dir {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Holds the lock on a data dir until dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    pub fn open(path: &Path) -> Result<DataDir, DataDirError> {
        let io = |source| DataDirError::Io {
            path: path.to_owned(),
            source,
        };
        std::fs::create_dir_all(path).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.join("nodai.lock"))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = Some(pid.trim().to_owned()).filter(|p| !p.is_empty());
                return Err(DataDirError::Locked {
                    path: path.to_owned(),
                    pid,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        // The pid is only for the message above; the OS lock is what counts.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DataDir {
            path: path.to_owned(),
            _lock: file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_open_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDir::open(dir.path()).unwrap();
        let err = DataDir::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, DataDirError::Locked { pid: Some(pid), .. } if *pid == std::process::id().to_string()),
            "{err}"
        );
        assert!(err.to_string().contains("already using the data dir"));
        drop(held);
        DataDir::open(dir.path()).unwrap();
    }
}
