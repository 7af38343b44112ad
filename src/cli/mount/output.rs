//! What `mount` does with the answer: the files written into a directory (no symlink
//! followed, no mode wider than the final one at any time), or listed with their modes and
//! versions (values hidden unless asked).

use crate::proto::MountResponse;
use std::collections::BTreeMap;
use std::path::Path;

pub(super) fn write_or_list(
    response: &MountResponse,
    out: Option<&str>,
    show: bool,
) -> Result<(), String> {
    let versions: BTreeMap<&str, &str> = response
        .object_version
        .iter()
        .map(|v| (v.id.as_str(), v.version.as_str()))
        .collect();
    if let Some(dir) = out.filter(|d| !d.is_empty()) {
        let dir = Path::new(dir);
        for file in &response.files {
            write_file(dir, &file.path, &file.contents, file.mode as u32 & 0o777)?;
        }
        println!("wrote {} files to {}", response.files.len(), dir.display());
        return Ok(());
    }
    println!("{:<6} {:>8}  {:<44}  PATH", "MODE", "BYTES", "VERSION");
    for file in &response.files {
        println!(
            "{:<6} {:>8}  {:<44}  {}",
            format!("{:04o}", file.mode),
            file.contents.len(),
            versions.get(file.path.as_str()).copied().unwrap_or(""),
            file.path
        );
    }
    if show {
        for file in &response.files {
            println!("\n==> {} <==", file.path);
            println!("{}", String::from_utf8_lossy(&file.contents));
        }
    } else {
        println!("(values hidden; add -show-values to print them)");
    }
    Ok(())
}

/// Writes one file under `dir` without following a symlink anywhere below `dir` (a link
/// left there cannot redirect the write), created with no wider mode than its final one.
fn write_file(dir: &Path, rel: &str, contents: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    crate::stages::plan::validate_file_name(rel)
        .map_err(|e| format!("refusing file {rel:?}: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut current = dir.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    let (name, parents) = parts.split_last().ok_or("empty file name")?;
    for part in parents {
        current.push(part);
        match std::fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "{} exists and is not a directory (a symlink is not followed)",
                    current.display()
                ));
            }
            Err(_) => std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&current)
                .map_err(|e| format!("creating {}: {e}", current.display()))?,
        }
    }
    current.push(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&current)
        .map_err(|e| {
            format!(
                "writing {} (a symlink is not followed): {e}",
                current.display()
            )
        })?;
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", current.display()))?;
    f.write_all(contents)
        .map_err(|e| format!("writing {}: {e}", current.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_never_follows_symlinks_and_writes_final_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("f")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("d")).unwrap();
        assert!(write_file(dir.path(), "f", b"secret", 0o600).is_err());
        assert!(write_file(dir.path(), "d/x", b"secret", 0o600).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(!outside.path().join("x").exists());
        write_file(dir.path(), "a/b/c", b"v", 0o640).unwrap();
        let meta = std::fs::metadata(dir.path().join("a/b/c")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        write_file(dir.path(), "a/b/c", b"w", 0o400).unwrap();
        let meta = std::fs::metadata(dir.path().join("a/b/c")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o400);
    }
}
