//! hostPath `type` checks (upstream's hostPath plugin): `DirectoryOrCreate` and
//! `FileOrCreate` create what is missing, the other types only check.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

/// Checks (and for the `...OrCreate` types, creates) `path` for hostPath type `kind`.
pub fn check_type(path: &Path, kind: Option<&str>) -> Result<(), String> {
    let shown = path.display();
    let meta = std::fs::metadata(path);
    let exists = meta.is_ok();
    let file_type = meta.as_ref().ok().map(|m| m.file_type());
    let not = |what: &str| format!("hostPath type check failed: {shown} is not {what}");
    match kind.unwrap_or("") {
        "" => Ok(()),
        "DirectoryOrCreate" if !exists => make_dir(path),
        "DirectoryOrCreate" | "Directory" => {
            if file_type.is_some_and(|t| t.is_dir()) {
                Ok(())
            } else {
                Err(not("a directory"))
            }
        }
        "FileOrCreate" if !exists => make_file(path),
        "FileOrCreate" | "File" => {
            if file_type.is_some_and(|t| t.is_file()) {
                Ok(())
            } else {
                Err(not("a file"))
            }
        }
        "Socket" => {
            if file_type.is_some_and(|t| t.is_socket()) {
                Ok(())
            } else {
                Err(not("a socket file"))
            }
        }
        "CharDevice" => {
            if file_type.is_some_and(|t| t.is_char_device()) {
                Ok(())
            } else {
                Err(not("a character device"))
            }
        }
        "BlockDevice" => {
            if file_type.is_some_and(|t| t.is_block_device()) {
                Ok(())
            } else {
                Err(not("a block device"))
            }
        }
        other => Err(format!("{other} is an invalid volume type")),
    }
}

fn make_dir(path: &Path) -> Result<(), String> {
    let result = std::fs::create_dir_all(path)
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)));
    result.map_err(|e| format!("hostPath type check failed: cannot create {}: {e}", path.display()))
}

fn make_file(path: &Path) -> Result<(), String> {
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|_| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)))
        .or_else(|e| if e.kind() == io::ErrorKind::AlreadyExists { Ok(()) } else { Err(e) });
    result.map_err(|e| format!("hostPath type check failed: cannot create {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_checked_and_created() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d/e");
        let f = dir.path().join("f");
        assert!(check_type(&d, Some("Directory")).is_err());
        check_type(&d, Some("DirectoryOrCreate")).unwrap();
        assert!(d.is_dir());
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o755);
        check_type(&d, Some("Directory")).unwrap();
        assert_eq!(
            check_type(&d, Some("File")).unwrap_err(),
            format!("hostPath type check failed: {} is not a file", d.display())
        );
        check_type(&f, Some("FileOrCreate")).unwrap();
        assert!(f.is_file());
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o644);
        check_type(&f, Some("File")).unwrap();
        assert_eq!(
            check_type(&f, Some("DirectoryOrCreate")).unwrap_err(),
            format!("hostPath type check failed: {} is not a directory", f.display())
        );
        // FileOrCreate does not create parent directories.
        assert!(check_type(&dir.path().join("no/such"), Some("FileOrCreate")).is_err());
        assert_eq!(
            check_type(&f, Some("Socket")).unwrap_err(),
            format!("hostPath type check failed: {} is not a socket file", f.display())
        );
        assert!(check_type(&f, Some("BlockDevice")).is_err());
        check_type(Path::new("/dev/null"), Some("CharDevice")).unwrap();
        assert!(check_type(Path::new("/dev/null"), Some("File")).is_err());
        let sock = dir.path().join("s");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        check_type(&sock, Some("Socket")).unwrap();
        check_type(&dir.path().join("anything"), None).unwrap();
        check_type(&dir.path().join("anything"), Some("")).unwrap();
        assert_eq!(check_type(&f, Some("Weird")).unwrap_err(), "Weird is an invalid volume type");
    }
}
