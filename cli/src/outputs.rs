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
            // The temporary file goes beside the file replaced: try creating it now.
            let probe = difftopk_io::temporary_path(file);
            match std::fs::File::create(&probe) {
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
