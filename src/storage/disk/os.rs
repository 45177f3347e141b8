//! The real disk: files under a root directory, with real `fsync`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::{Disk, DiskFuture, RandomFile};

/// The file in a data directory whose lock says a process uses it.
pub const LOCK_FILE: &str = "LOCK";

/// Files under `root`. Blocking calls run off the async workers.
///
/// The directory is locked (an exclusive lock on its `LOCK` file) for as
/// long as any clone of the disk lives, so a second process cannot open it.
#[derive(Debug, Clone)]
pub struct OsDisk {
    root: PathBuf,
    _lock: Arc<File>,
}

impl OsDisk {
    /// A disk rooted at `root`, which is created if missing; refused
    /// (`WouldBlock`) while another process has it open.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<OsDisk> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        let lock_path = root.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        lock.try_lock().map_err(|e| match e {
            fs::TryLockError::WouldBlock => io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "{} is in use by another process (it holds the lock on {})",
                    root.display(),
                    lock_path.display()
                ),
            ),
            fs::TryLockError::Error(e) => e,
        })?;
        Ok(OsDisk {
            root,
            _lock: Arc::new(lock),
        })
    }

    fn path(&self, relative: &str) -> io::Result<PathBuf> {
        let relative = Path::new(relative);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("path {relative:?} must be relative and plain"),
            ));
        }
        Ok(self.root.join(relative))
    }

    /// Runs blocking file I/O off the async workers.
    fn blocking<'a, T: Send + 'static>(
        &'a self,
        path: &str,
        f: impl FnOnce(PathBuf) -> io::Result<T> + Send + 'static,
    ) -> DiskFuture<'a, T> {
        let path = self.path(path);
        Box::pin(async move {
            let path = path?;
            crate::runtime::blocking(move || f(path)).await
        })
    }
}

impl Disk for OsDisk {
    fn create_dir(&self, dir: &str) -> DiskFuture<'_, ()> {
        self.blocking(dir, |path| fs::create_dir_all(path))
    }

    fn create(&self, path: &str) -> DiskFuture<'_, ()> {
        self.blocking(path, |path| File::create(path).map(drop))
    }

    fn append<'a>(&'a self, path: &'a str, data: &'a [u8]) -> DiskFuture<'a, ()> {
        let data = data.to_vec();
        self.blocking(path, move |path| {
            OpenOptions::new().append(true).open(path)?.write_all(&data)
        })
    }

    fn append_and_sync<'a>(&'a self, path: &'a str, data: &'a [u8]) -> DiskFuture<'a, ()> {
        let data = data.to_vec();
        self.blocking(path, move |path| {
            let mut file = OpenOptions::new().append(true).open(path)?;
            file.write_all(&data)?;
            // The data and the length that reaches it; no other metadata.
            file.sync_data()
        })
    }

    fn read(&self, path: &str) -> DiskFuture<'_, Vec<u8>> {
        self.blocking(path, fs::read)
    }

    fn truncate(&self, path: &str, len: u64) -> DiskFuture<'_, ()> {
        self.blocking(path, move |path| {
            OpenOptions::new().write(true).open(path)?.set_len(len)
        })
    }

    fn sync(&self, path: &str) -> DiskFuture<'_, ()> {
        self.blocking(path, |path| File::open(path)?.sync_all())
    }

    fn rename<'a>(&'a self, from: &'a str, to: &'a str) -> DiskFuture<'a, ()> {
        let to = self.path(to);
        self.blocking(from, move |from| fs::rename(from, to?))
    }

    fn remove(&self, path: &str) -> DiskFuture<'_, ()> {
        self.blocking(path, |path| match fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        })
    }

    fn list(&self, dir: &str) -> DiskFuture<'_, Vec<String>> {
        self.blocking(dir, |path| {
            let entries = match fs::read_dir(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                other => other?,
            };
            let mut names = Vec::new();
            for entry in entries {
                let entry = entry?;
                if entry.file_type()?.is_file() {
                    names.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
            names.sort();
            Ok(names)
        })
    }

    fn sync_dir(&self, dir: &str) -> DiskFuture<'_, ()> {
        self.blocking(dir, |path| File::open(path)?.sync_all())
    }

    fn open_random(&self, path: &str) -> DiskFuture<'_, Arc<dyn RandomFile>> {
        self.blocking(path, |path| {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?;
            Ok(Arc::new(OsFile(file)) as Arc<dyn RandomFile>)
        })
    }
}

/// A real file written in place.
#[derive(Debug)]
struct OsFile(File);

impl RandomFile for OsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read_at(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.0.read_exact_at(out, offset)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}
