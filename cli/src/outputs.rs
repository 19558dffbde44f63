//! Checks of the output paths before any work: an output must not name an input or another
//! output (through links and `./..` spellings alike), an existing directory, or a directory
//! that does not exist or cannot be written.

use std::path::{Path, PathBuf};

use crate::error::CliResult;
use crate::fail;

/// The file a path names, for comparing paths: canonical where it exists, else its canonical
/// directory joined with its name; for an output, through symbolic links (what it replaces).
pub(crate) fn identity(path: &Path) -> Option<PathBuf> {
    if let Ok(canonical) = path.canonicalize() {
        return Some(canonical);
    }
    let name = path.file_name()?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    Some(parent.canonicalize().ok()?.join(name))
}

/// Fails before any work when an output (flag, path) is a directory, lies in a directory that
/// does not exist or cannot be written, names one of the inputs (flag, `PATH` or
/// `PATH:NAME`), or names the same file as another output.
pub fn check_outputs(inputs: &[(&str, &str)], outputs: &[(&str, &Path)]) -> CliResult<()> {
    let inputs: Vec<(&str, Option<PathBuf>)> = inputs
        .iter()
        .map(|&(flag, spec)| {
            let (path, _) = difftopk_io::split_spec(spec);
            (flag, identity(Path::new(path)))
        })
        .collect();
    let mut seen: Vec<(&str, PathBuf)> = Vec::new();
    for &(flag, path) in outputs {
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        if !parent.is_dir() {
            fail!(
                "{}: {flag}: the directory {} does not exist",
                path.display(),
                parent.display()
            );
        }
        let replaced = match difftopk_io::replaced_file(path) {
            Ok(replaced) => replaced,
            Err(e) => fail!("{}: {flag}: {e}", path.display()),
        };
        if let Some(file) = &replaced {
            // The temporary file goes beside the file replaced: try creating it now, as the
            // writer does (a leftover of a killed run under the same name, read-only or a
            // symbolic link, is removed rather than opened).
            let probe = difftopk_io::temporary_path(file);
            let _ = std::fs::remove_file(&probe);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
            {
                Ok(_) => {
                    let _ = std::fs::remove_file(&probe);
                }
                Err(e) => fail!("{}: {flag}: cannot write there: {e}", path.display()),
            }
        }
        // A special file (a FIFO, a terminal, /dev/null) takes what is written into it.
        let Some(output) = replaced.as_deref().and_then(identity) else {
            continue;
        };
        if let Some((input_flag, _)) = inputs
            .iter()
            .find(|(_, input)| input.as_ref() == Some(&output))
        {
            fail!(
                "{}: {flag} would overwrite the input given as {input_flag}",
                path.display()
            );
        }
        if let Some((other, _)) = seen.iter().find(|(_, earlier)| *earlier == output) {
            fail!("{}: {other} and {flag} name the same file", path.display());
        }
        seen.push((flag, output));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The up-front check creates the temporary file as a probe: a leftover of a killed run
    /// under the same name (same process id) is removed, not opened. A read-only one failed
    /// the check with "Permission denied" (for a user other than root); a symbolic link there
    /// had its target truncated.
    #[cfg(unix)]
    #[test]
    fn the_probe_replaces_a_leftover_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let directory =
            std::env::temp_dir().join(format!("difftopk-outputs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).unwrap();
        let out = directory.join("head.safetensors");
        let temporary = difftopk_io::temporary_path(&out);
        std::fs::write(&temporary, b"left over").unwrap();
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o444)).unwrap();
        check_outputs(&[], &[("--out", &out)]).unwrap_or_else(|e| panic!("{e}"));
        assert!(!temporary.exists());
        let victim = directory.join("victim.txt");
        std::fs::write(&victim, b"untouched").unwrap();
        std::os::unix::fs::symlink("victim.txt", &temporary).unwrap();
        check_outputs(&[], &[("--out", &out)]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert!(std::fs::symlink_metadata(&temporary).is_err());
        std::fs::remove_dir_all(directory).unwrap();
    }
}
