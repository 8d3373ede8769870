//! volumeMount `subPath`/`subPathExpr`: checked (relative, no `..`), created as directories
//! when missing, and resolved to a canonical path that must stay inside the volume even when
//! the volume holds symlinks (a container can write symlinks into its volumes).

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::expand::expand;

/// Expands a `subPathExpr` against the container's environment; every referenced variable
/// must be set and non-empty.
pub fn expand_sub_path_expr(expr: &str, env: &[(String, String)]) -> Result<String, String> {
    let map: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut missing = BTreeSet::new();
    let expanded = expand(expr, |name| match map.get(name) {
        Some(v) if !v.is_empty() => Some((*v).to_owned()),
        _ => {
            missing.insert(name.to_owned());
            Some(String::new())
        }
    });
    if missing.is_empty() {
        Ok(expanded)
    } else {
        Err(format!("missing value for {}", missing.into_iter().collect::<Vec<_>>().join(", ")))
    }
}

/// Checks a subPath like upstream's `makeMounts`.
pub fn validate(sub_path: &str) -> Result<(), String> {
    if Path::new(sub_path).is_absolute() {
        return Err(format!("error SubPath `{sub_path}` must not be an absolute path"));
    }
    if sub_path.split('/').any(|s| s == "..") {
        return Err(format!("unable to provision SubPath `{sub_path}`: must not contain '..'"));
    }
    Ok(())
}

/// Resolves `sub_path` inside `volume` (creating missing directories with the volume's mode)
/// and returns its canonical path, which is inside the volume's canonical path.
pub fn resolve(volume: &Path, sub_path: &str) -> Result<PathBuf, String> {
    validate(sub_path)?;
    let io_err = |e: io::Error| format!("failed to prepare subPath `{sub_path}`: {e}");
    let root = std::fs::canonicalize(volume).map_err(io_err)?;
    let mode = std::fs::metadata(&root).map_err(io_err)?.permissions().mode() & 0o7777;
    let outside =
        || format!("subpath {:?} not within volume path {:?}", volume.join(sub_path), volume);
    let mut current = root.clone();
    for part in Path::new(sub_path).components() {
        let Component::Normal(part) = part else { continue };
        let next = current.join(part);
        match std::fs::symlink_metadata(&next) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => match std::fs::create_dir(&next) {
                Ok(()) => {
                    std::fs::set_permissions(&next, std::fs::Permissions::from_mode(mode))
                        .map_err(io_err)?;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(e)),
            },
            Err(e) => return Err(io_err(e)),
            Ok(_) => {}
        }
        let resolved = std::fs::canonicalize(&next).map_err(|_| outside())?;
        if !resolved.starts_with(&root) {
            return Err(outside());
        }
        current = resolved;
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_absolute_and_backsteps() {
        assert_eq!(
            validate("/etc").unwrap_err(),
            "error SubPath `/etc` must not be an absolute path"
        );
        assert_eq!(
            validate("a/../../etc").unwrap_err(),
            "unable to provision SubPath `a/../../etc`: must not contain '..'"
        );
        assert!(validate("a/..b/c").is_ok());
    }

    #[test]
    fn creates_missing_dirs_inside_the_volume() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(0o777)).unwrap();
        let p = resolve(&vol, "a/b").unwrap();
        assert_eq!(p, std::fs::canonicalize(&vol).unwrap().join("a/b"));
        assert!(p.is_dir());
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o777);
        // An existing file is fine.
        std::fs::write(vol.join("f"), "x").unwrap();
        assert!(resolve(&vol, "f").unwrap().is_file());
    }

    #[test]
    fn symlinks_out_of_the_volume_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        let secret = dir.path().join("secret");
        std::fs::create_dir(&vol).unwrap();
        std::fs::create_dir(&secret).unwrap();
        std::os::unix::fs::symlink(&secret, vol.join("escape")).unwrap();
        std::os::unix::fs::symlink("../secret", vol.join("rel")).unwrap();
        std::os::unix::fs::symlink("/", vol.join("root")).unwrap();
        for sub in ["escape", "escape/x", "rel", "root/etc"] {
            let e = resolve(&vol, sub).unwrap_err();
            assert!(e.contains("not within volume path"), "{sub}: {e}");
        }
        // Nothing was created outside.
        assert!(!secret.join("x").exists());
        // A symlink that stays inside is followed.
        std::fs::create_dir(vol.join("real")).unwrap();
        std::os::unix::fs::symlink("real", vol.join("inside")).unwrap();
        let p = resolve(&vol, "inside/y").unwrap();
        assert_eq!(p, std::fs::canonicalize(&vol).unwrap().join("real/y"));
    }

    #[test]
    fn sub_path_expr_expands_and_requires_values() {
        let env = vec![("POD".to_owned(), "p1".to_owned()), ("E".to_owned(), String::new())];
        assert_eq!(expand_sub_path_expr("logs/$(POD)", &env).unwrap(), "logs/p1");
        assert_eq!(
            expand_sub_path_expr("$(X)/$(E)/$(POD)", &env).unwrap_err(),
            "missing value for E, X"
        );
    }
}
