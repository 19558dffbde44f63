//! Atomic file replacement: write a temporary file beside the target, flush it to disk, rename.
//!
//! A symbolic link is written through (its target is replaced, the link stays); a special file
//! that exists (a FIFO, a terminal, `/dev/null`) is written into directly, since renaming over it
//! would replace it with a regular file, and `/dev/stdout` / `/dev/stderr` are this process's
//! streams wherever they were redirected; a directory is an error.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The temporary path used while writing `path` (same directory, so the rename is atomic).
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// What writing `path` replaces: the regular file it names (through any symbolic links,
/// followed up to 40 deep; the final target need not exist yet), or `None` for an existing
/// special file or this process's standard output or error, which are written into directly.
/// An existing directory is an error.
pub fn replaced_file(path: &Path) -> io::Result<Option<PathBuf>> {
    if standard_stream(path).is_some() {
        return Ok(None);
    }
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            ))
        }
        Ok(meta) if !meta.is_file() => return Ok(None),
        _ => {}
    }
    let mut target = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&target) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = fs::read_link(&target)?;
                target = match target.parent() {
                    Some(parent) if link.is_relative() => parent.join(link),
                    _ => link,
                };
            }
            _ => return Ok(Some(target)),
        }
    }
    Err(io::Error::other("too many levels of symbolic links"))
}

/// This process's standard output or error.
#[derive(Clone, Copy)]
enum StandardStream {
    Output,
    Error,
}

/// `/dev/stdout` and `/dev/stderr` (also as `/dev/fd/N`, `/proc/self/fd/N`) are this process's
/// own streams, written through a duplicate of the descriptor ([`open_standard_stream`]):
/// resolving the link instead would find the file a shell redirected the stream to and replace
/// it (losing what `>>` appended to). By name only; `None` off Unix.
fn standard_stream(path: &Path) -> Option<StandardStream> {
    if !cfg!(unix) {
        return None;
    }
    match path.to_str()? {
        "/dev/stdout" | "/dev/fd/1" | "/proc/self/fd/1" => Some(StandardStream::Output),
        "/dev/stderr" | "/dev/fd/2" | "/proc/self/fd/2" => Some(StandardStream::Error),
        _ => None,
    }
}

/// A file on a duplicate of the stream's descriptor (same open file: offset and append mode).
#[cfg(unix)]
fn open_standard_stream(stream: StandardStream) -> io::Result<File> {
    use std::os::fd::AsFd;
    let descriptor = match stream {
        StandardStream::Output => io::stdout().as_fd().try_clone_to_owned(),
        StandardStream::Error => io::stderr().as_fd().try_clone_to_owned(),
    };
    descriptor.map(File::from)
}

#[cfg(not(unix))]
fn open_standard_stream(_: StandardStream) -> io::Result<File> {
    unreachable!("standard_stream names no stream off Unix")
}

/// Writes `path` atomically: `write` fills a temporary file, which is synced and renamed over
/// `path` (over a symbolic link's target) only when everything succeeded; on any error the
/// temporary file is removed and an existing `path` is untouched. An existing special file
/// (a FIFO, a terminal, `/dev/null`) is written into directly instead; a directory is an error.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    let Some(path) = replaced_file(path)? else {
        let file = match standard_stream(path) {
            Some(stream) => open_standard_stream(stream)?,
            None => OpenOptions::new().write(true).open(path)?,
        };
        let mut writer = BufWriter::new(file);
        write(&mut writer)?;
        return writer.flush();
    };
    let path = path.as_path();
    let temporary = temporary_path(path);
    let result = (|| {
        let mut writer = BufWriter::new(File::create(&temporary)?);
        write(&mut writer)?;
        writer.flush()?;
        writer.get_ref().sync_all()?;
        drop(writer);
        fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

/// [`write_atomically`] with the whole content at hand.
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomically(path, |w| w.write_all(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let directory =
            std::env::temp_dir().join(format!("difftopk-atomic-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&directory);
        fs::create_dir_all(&directory).unwrap();
        directory
    }

    #[test]
    fn replaces_a_regular_file_and_leaves_it_on_failure() {
        let directory = scratch("regular");
        let path = directory.join("out.txt");
        write_bytes_atomically(&path, b"first").unwrap();
        let failed = write_atomically(&path, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("stop"))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"first");
        write_bytes_atomically(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(
            fs::read_dir(&directory).unwrap().count(),
            1,
            "no temporary file left"
        );
        fs::remove_dir_all(directory).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn writes_through_a_symbolic_link() {
        let directory = scratch("link");
        let target = directory.join("real.csv");
        fs::write(&target, b"old").unwrap();
        let link = directory.join("link.csv");
        std::os::unix::fs::symlink("real.csv", &link).unwrap();
        write_bytes_atomically(&link, b"new").unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"new");
        // A dangling link gets its target created.
        let dangling = directory.join("dangling.csv");
        std::os::unix::fs::symlink("created.csv", &dangling).unwrap();
        write_bytes_atomically(&dangling, b"made").unwrap();
        assert_eq!(fs::read(directory.join("created.csv")).unwrap(), b"made");
        fs::remove_dir_all(directory).unwrap();
    }

    #[test]
    fn refuses_a_directory() {
        let directory = scratch("directory");
        let error = write_bytes_atomically(&directory, b"x").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::IsADirectory);
        assert!(directory.is_dir());
        fs::remove_dir_all(directory).unwrap();
    }
}
