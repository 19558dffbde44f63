//! Atomic file replacement: write a temporary file beside the target, flush it to disk, rename.
//! The new file keeps the permission bits of the file it replaces (Unix: created with them, then
//! set exactly where the filesystem allows chmod).
//! Several outputs that belong together are [staged](stage_bytes) first and
//! [committed](commit_all) as a set, so that a failure in writing any of them leaves all the old
//! files (a rename that fails during the commit itself is reported with the outputs already
//! replaced and those not).
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

/// Creates the temporary file for `target`. A file left under the same name by a killed run is
/// removed first: opening it would keep its mode (read-only when it was copied from a read-only
/// target, so that writing failed with "Permission denied") or follow a symbolic link there.
///
/// When `target` exists, the temporary file gets its permission bits (on Unix), so that
/// replacing a file keeps its mode: a `chmod 600` output stays private. The file is created with
/// those bits (the umask can only narrow them), so it is never readable more widely than the
/// target, not even before the bits are set exactly; setting them is best effort, since a
/// filesystem that refuses chmod must still get its files written.
fn create_temporary(temporary: &Path, target: &Path) -> io::Result<File> {
    // Not found is the usual case; any other failure shows up as the creation's error.
    let _ = fs::remove_file(temporary);
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    let permissions = fs::metadata(target).ok().map(|meta| meta.permissions());
    #[cfg(unix)]
    if let Some(permissions) = &permissions {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(permissions.mode() & 0o777);
    }
    #[cfg(not(unix))]
    let _ = target;
    let file = options.open(temporary)?;
    #[cfg(unix)]
    if let Some(permissions) = permissions {
        let _ = set_permissions(&file, permissions);
    }
    Ok(file)
}

/// Sets the permission bits of an open file (in tests it can be made to fail, as on a
/// filesystem that refuses chmod).
#[cfg(unix)]
fn set_permissions(file: &File, permissions: fs::Permissions) -> io::Result<()> {
    #[cfg(test)]
    if tests::REFUSE_CHMOD.with(std::cell::Cell::get) {
        return Err(io::Error::from(io::ErrorKind::PermissionDenied));
    }
    file.set_permissions(permissions)
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
        let mut writer = BufWriter::new(create_temporary(&temporary, path)?);
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

/// An output written but not yet in place: a synced temporary file beside the file it will
/// replace, or, for a special file (a FIFO, `/dev/stdout`), the bytes it will receive.
/// [`StagedFile::commit`] (or [`commit_all`]) puts it in place; dropping it uncommitted removes
/// the temporary file and leaves the old file untouched.
#[must_use = "a staged file is removed unless it is committed"]
#[derive(Debug)]
pub struct StagedFile {
    /// The path as given (for messages).
    path: PathBuf,
    pending: Pending,
}

#[derive(Debug)]
enum Pending {
    /// Renamed over `target` on commit.
    Rename { temporary: PathBuf, target: PathBuf },
    /// Written into the special file on commit (it cannot be replaced, nor written in advance).
    Direct(Vec<u8>),
    /// Committed (nothing left to clean up).
    Done,
}

/// Stages `bytes` for `path`: the steps of [`write_bytes_atomically`] up to, not including, the
/// rename (for a special file, nothing is written until the commit). A directory is an error.
pub fn stage_bytes(path: &Path, bytes: &[u8]) -> io::Result<StagedFile> {
    let Some(target) = replaced_file(path)? else {
        return Ok(StagedFile {
            path: path.to_path_buf(),
            pending: Pending::Direct(bytes.to_vec()),
        });
    };
    let temporary = temporary_path(&target);
    // From here on, dropping `staged` removes the temporary file, on every error path too.
    let staged = StagedFile {
        path: path.to_path_buf(),
        pending: Pending::Rename {
            temporary: temporary.clone(),
            target: target.clone(),
        },
    };
    let mut writer = BufWriter::new(create_temporary(&temporary, &target)?);
    writer.write_all(bytes)?;
    writer.flush()?;
    writer.get_ref().sync_all()?;
    Ok(staged)
}

impl StagedFile {
    /// The output's path as it was given to [`stage_bytes`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Puts the file in place: renames the temporary file over the target, or writes the bytes
    /// into the special file.
    pub fn commit(mut self) -> io::Result<()> {
        match std::mem::replace(&mut self.pending, Pending::Done) {
            Pending::Rename { temporary, target } => {
                let result = fs::rename(&temporary, &target);
                if result.is_err() {
                    let _ = fs::remove_file(&temporary);
                }
                result
            }
            Pending::Direct(bytes) => {
                let file = match standard_stream(&self.path) {
                    Some(stream) => open_standard_stream(stream)?,
                    None => OpenOptions::new().write(true).open(&self.path)?,
                };
                let mut writer = BufWriter::new(file);
                writer.write_all(&bytes)?;
                writer.flush()
            }
            Pending::Done => Ok(()),
        }
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if let Pending::Rename { temporary, .. } = &self.pending {
            let _ = fs::remove_file(temporary);
        }
    }
}

/// Why [`commit_all`] failed: the output whose commit failed, the error, and which outputs of
/// the set were put in place before it and which were not.
#[derive(Debug)]
pub struct CommitError {
    /// The output that failed, as given to [`stage_bytes`].
    pub path: PathBuf,
    /// What went wrong.
    pub error: io::Error,
    /// Outputs put in place before the failure (renamed over the old file, or written into the
    /// special file): they hold the new content.
    pub replaced: Vec<PathBuf>,
    /// Outputs not put in place: the one that failed, then those after it. Their old files are
    /// untouched and their temporary files removed.
    pub not_replaced: Vec<PathBuf>,
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |paths: &[PathBuf]| {
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(f, "{}: {}", self.path.display(), self.error)?;
        if self.replaced.is_empty() {
            write!(f, " (no output of the set was replaced)")
        } else {
            write!(
                f,
                "; already replaced: {}; not replaced: {}",
                list(&self.replaced),
                list(&self.not_replaced)
            )
        }
    }
}

impl std::error::Error for CommitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Commits staged outputs as a set: first the special files (whose writes can fail, a full
/// disk behind `/dev/stdout`, and cannot be undone), then the renames. Every file was written
/// when it was staged, so the renames only fail in exceptional cases (the directory removed or
/// made read-only meanwhile, a directory put in the way); then the outputs renamed before the
/// failure hold the new content and the others the old. On the first error the remaining
/// temporary files are removed and the [`CommitError`] names the output that failed, the outputs
/// already replaced and those not.
pub fn commit_all(files: Vec<StagedFile>) -> Result<(), CommitError> {
    let (direct, renamed): (Vec<StagedFile>, Vec<StagedFile>) = files
        .into_iter()
        .partition(|file| matches!(file.pending, Pending::Direct(_)));
    let mut replaced = Vec::new();
    let mut files = direct.into_iter().chain(renamed);
    while let Some(file) = files.next() {
        let path = file.path.clone();
        if let Err(error) = file.commit() {
            // Dropping the rest removes their temporary files.
            let not_replaced = std::iter::once(path.clone())
                .chain(files.map(|rest| rest.path.clone()))
                .collect();
            return Err(CommitError {
                path,
                error,
                replaced,
                not_replaced,
            });
        }
        replaced.push(path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Makes [`set_permissions`] fail on this thread, as on a filesystem that refuses chmod.
        pub(super) static REFUSE_CHMOD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

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

    /// Replacing a file keeps its permission bits (they came back as the umask's 644).
    #[cfg(unix)]
    #[test]
    fn replacing_keeps_the_permission_bits() {
        use std::os::unix::fs::PermissionsExt;
        let directory = scratch("mode");
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        for (name, bits) in [("private.json", 0o600), ("shared.json", 0o664)] {
            let path = directory.join(name);
            fs::write(&path, b"old").unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(bits)).unwrap();
            write_bytes_atomically(&path, b"new").unwrap();
            assert_eq!(mode(&path), bits, "{name} by write_atomically");
            fs::set_permissions(&path, fs::Permissions::from_mode(bits)).unwrap();
            commit_all(vec![stage_bytes(&path, b"staged").unwrap()]).unwrap();
            assert_eq!(mode(&path), bits, "{name} by stage_bytes");
            assert_eq!(fs::read(&path).unwrap(), b"staged");
        }
        // Through a symbolic link: the target's bits, and the link stays a link, for both
        // writers.
        let target = directory.join("private.json");
        let link = directory.join("link.json");
        std::os::unix::fs::symlink("private.json", &link).unwrap();
        write_bytes_atomically(&link, b"linked").unwrap();
        assert_eq!(mode(&target), 0o600);
        assert_eq!(fs::read(&target).unwrap(), b"linked");
        commit_all(vec![stage_bytes(&link, b"staged link").unwrap()]).unwrap();
        assert_eq!(mode(&target), 0o600, "by stage_bytes through the link");
        assert_eq!(fs::read(&target).unwrap(), b"staged link");
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        fs::remove_dir_all(directory).unwrap();
    }

    /// On a filesystem that refuses chmod (simulated) the file is still written, and it has the
    /// target's bits all the same, since it was created with them: never more open than the
    /// target, not even between its creation and the chmod.
    #[cfg(unix)]
    #[test]
    fn a_refused_chmod_still_writes_with_the_targets_bits() {
        use std::os::unix::fs::PermissionsExt;
        let directory = scratch("refused-chmod");
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let path = directory.join("private.json");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        REFUSE_CHMOD.with(|refuse| refuse.set(true));
        write_bytes_atomically(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600, "by write_atomically");
        let staged = stage_bytes(&path, b"staged").unwrap();
        assert_eq!(
            mode(&temporary_path(&path)),
            0o600,
            "the staged temporary file"
        );
        commit_all(vec![staged]).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"staged");
        assert_eq!(mode(&path), 0o600, "by stage_bytes");
        REFUSE_CHMOD.with(|refuse| refuse.set(false));
        fs::remove_dir_all(directory).unwrap();
    }

    /// A temporary file left by a killed run under the same name (same process id) is replaced,
    /// not reused: a read-only one (copied from a read-only target) made every later write fail
    /// with "Permission denied" (for a user other than root) or kept its mode, and a symbolic link
    /// there was written through.
    #[cfg(unix)]
    #[test]
    fn a_leftover_temporary_file_is_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let directory = scratch("leftover");
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        // The mode a new file gets here (the umask's).
        let fresh = directory.join("fresh");
        File::create(&fresh).unwrap();
        let fresh_mode = mode(&fresh);
        fs::remove_file(&fresh).unwrap();
        let victim = directory.join("victim.txt");
        fs::write(&victim, b"untouched").unwrap();
        type Writer = fn(&Path, &[u8]);
        let writers: [(&str, Writer); 2] = [
            ("write_atomically", |path, bytes| {
                write_bytes_atomically(path, bytes).unwrap()
            }),
            ("stage_bytes", |path, bytes| {
                commit_all(vec![stage_bytes(path, bytes).unwrap()]).unwrap()
            }),
        ];
        for (writer, write) in writers {
            let path = directory.join(format!("{writer}.json"));
            let temporary = temporary_path(&path);
            // A read-only leftover, the target not there (yet).
            fs::write(&temporary, b"left over").unwrap();
            fs::set_permissions(&temporary, fs::Permissions::from_mode(0o444)).unwrap();
            write(&path, b"new");
            assert_eq!(fs::read(&path).unwrap(), b"new", "{writer}");
            assert_eq!(mode(&path), fresh_mode, "{writer}: the leftover's 444 kept");
            // A read-only target and its read-only leftover.
            fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
            fs::write(&temporary, b"left over").unwrap();
            fs::set_permissions(&temporary, fs::Permissions::from_mode(0o444)).unwrap();
            write(&path, b"newer");
            assert_eq!(fs::read(&path).unwrap(), b"newer", "{writer}");
            assert_eq!(mode(&path), 0o444, "{writer}");
            // A symbolic link left there is removed, not written through.
            std::os::unix::fs::symlink("victim.txt", &temporary).unwrap();
            write(&path, b"newest");
            assert_eq!(fs::read(&path).unwrap(), b"newest", "{writer}");
            assert!(fs::symlink_metadata(&path).unwrap().is_file(), "{writer}");
            assert_eq!(fs::read(&victim).unwrap(), b"untouched", "{writer}");
            assert!(fs::symlink_metadata(&temporary).is_err(), "{writer}");
        }
        fs::remove_dir_all(directory).unwrap();
    }

    fn names(directory: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(directory)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn staged_files_replace_nothing_until_committed() {
        let directory = scratch("staged");
        let (a, b) = (directory.join("a.txt"), directory.join("b.txt"));
        fs::write(&a, b"old a").unwrap();
        // Staged and dropped (a later output failed): the old file stays, nothing is left over.
        let staged = stage_bytes(&a, b"new a").unwrap();
        assert_eq!(staged.path(), a.as_path());
        assert_eq!(fs::read(&a).unwrap(), b"old a");
        assert_eq!(
            names(&directory).len(),
            2,
            "the temporary file exists while staged"
        );
        drop(staged);
        assert_eq!(names(&directory), ["a.txt"]);
        // A set whose last member cannot be staged (a directory) leaves every old file.
        fs::create_dir(&b).unwrap();
        let staged = stage_bytes(&a, b"new a").unwrap();
        assert_eq!(
            stage_bytes(&b, b"new b").unwrap_err().kind(),
            io::ErrorKind::IsADirectory
        );
        drop(staged);
        assert_eq!(fs::read(&a).unwrap(), b"old a");
        assert_eq!(names(&directory), ["a.txt", "b.txt"]);
        fs::remove_dir(&b).unwrap();
        // Committed as a set: both in place.
        let set = vec![
            stage_bytes(&a, b"new a").unwrap(),
            stage_bytes(&b, b"new b").unwrap(),
        ];
        assert_eq!(fs::read(&a).unwrap(), b"old a");
        commit_all(set).unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"new a");
        assert_eq!(fs::read(&b).unwrap(), b"new b");
        assert_eq!(names(&directory), ["a.txt", "b.txt"]);
        fs::remove_dir_all(directory).unwrap();
    }

    /// A special file in the set is written first, at the commit: when that write fails (a full
    /// disk) no regular file of the set has been replaced.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_failing_special_file_keeps_the_set_uncommitted() {
        let directory = scratch("staged-full");
        let regular = directory.join("head.bin");
        fs::write(&regular, b"old").unwrap();
        let full = directory.join("plot.svg");
        std::os::unix::fs::symlink("/dev/full", &full).unwrap();
        let set = vec![
            stage_bytes(&regular, b"new").unwrap(),
            stage_bytes(&full, b"never fits").unwrap(),
        ];
        let failure = commit_all(set).unwrap_err();
        assert_eq!(failure.path, full);
        assert_eq!(failure.error.raw_os_error(), Some(28), "ENOSPC: {failure}");
        assert!(failure.replaced.is_empty(), "{failure}");
        assert_eq!(failure.not_replaced, [full.clone(), regular.clone()]);
        assert_eq!(fs::read(&regular).unwrap(), b"old");
        assert_eq!(names(&directory), ["head.bin", "plot.svg"]);
        fs::remove_dir_all(directory).unwrap();
    }

    /// A rename that fails in the middle of a set (the second member's target became a
    /// non-empty directory after staging): the first output is already replaced, the others keep
    /// their old content, no temporary file is left, and the error lists both groups.
    #[test]
    fn a_rename_failing_in_the_middle_lists_what_was_replaced() {
        let directory = scratch("staged-middle");
        let [head, metrics, plot] = ["head.bin", "metrics.json", "plot.svg"].map(|name| {
            let path = directory.join(name);
            fs::write(&path, format!("old {name}")).unwrap();
            path
        });
        let set = vec![
            stage_bytes(&head, b"new head").unwrap(),
            stage_bytes(&metrics, b"new metrics").unwrap(),
            stage_bytes(&plot, b"new plot").unwrap(),
        ];
        fs::remove_file(&metrics).unwrap();
        fs::create_dir(&metrics).unwrap();
        fs::write(metrics.join("inside"), b"keeps the directory non-empty").unwrap();
        let failure = commit_all(set).unwrap_err();
        assert_eq!(failure.path, metrics);
        assert_eq!(failure.replaced, std::slice::from_ref(&head));
        assert_eq!(failure.not_replaced, [metrics.clone(), plot.clone()]);
        let message = failure.to_string();
        assert!(
            message.starts_with(&format!("{}: ", metrics.display()))
                && message.ends_with(&format!(
                    "; already replaced: {}; not replaced: {}, {}",
                    head.display(),
                    metrics.display(),
                    plot.display()
                )),
            "{message}"
        );
        assert_eq!(fs::read(&head).unwrap(), b"new head");
        assert_eq!(fs::read(&plot).unwrap(), b"old plot.svg");
        assert!(metrics.join("inside").exists());
        assert_eq!(names(&directory), ["head.bin", "metrics.json", "plot.svg"]);
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
