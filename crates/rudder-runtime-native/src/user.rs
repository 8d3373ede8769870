//! Resolving the user a container runs as: numeric ids, or names looked up in the image's
//! own /etc/passwd and /etc/group (never the host's).

use std::fs;
use std::path::PathBuf;

use crate::rootfs::find_in_layers;

/// The uid, gid and supplementary groups for `user` (`"1000"`, `"app"`, `"app:staff"`,
/// `"1000:1000"`) in the image files of `layers` (bottom first, as the overlay will show
/// them). An empty user is root.
pub fn resolve(layers: &[PathBuf], user: &str) -> Result<(u32, u32, Vec<u32>), String> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read_db(layers, "etc/passwd");
    let (uid, primary_gid, name) = if u.is_empty() {
        (0, 0, Some("root".to_owned()))
    } else if let Ok(uid) = u.parse::<u32>() {
        let entry =
            passwd.iter().find(|f| f.get(2).and_then(|s| s.parse::<u32>().ok()) == Some(uid));
        let gid = entry.and_then(|f| f.get(3)?.parse().ok()).unwrap_or(0);
        (uid, gid, entry.and_then(|f| f.first().cloned()))
    } else {
        let f =
            passwd.iter().find(|f| f.first().map(String::as_str) == Some(u)).ok_or_else(|| {
                format!("unable to find user {u}: no matching entries in passwd file")
            })?;
        let uid = f
            .get(2)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad passwd entry for {u}"))?;
        let gid = f.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
        (uid, gid, Some(u.to_owned()))
    };
    let groups = read_db(layers, "etc/group");
    let gid = match g {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|f| f.first().map(String::as_str) == Some(g))
                .and_then(|f| f.get(2)?.parse().ok())
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        },
    };
    let mut extra = Vec::new();
    if let Some(name) = name {
        for f in &groups {
            let members = f.get(3).map(String::as_str).unwrap_or("");
            if members.split(',').any(|m| m == name)
                && let Some(id) = f.get(2).and_then(|s| s.parse::<u32>().ok())
                && id != gid
                && !extra.contains(&id)
            {
                extra.push(id);
            }
        }
    }
    Ok((uid, gid, extra))
}

/// Reads a colon-separated database from the image's layers; a missing file is empty.
fn read_db(layers: &[PathBuf], rel: &str) -> Vec<Vec<String>> {
    let Some(path) = find_in_layers(layers, rel) else { return Vec::new() };
    fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_owned).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn users_resolve_from_the_image_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\napp:x:1000:\nstaff:x:50:app\n")
            .unwrap();
        let layers = [dir.path().to_owned()];
        assert_eq!(resolve(&layers, "").unwrap(), (0, 0, vec![]));
        assert_eq!(resolve(&layers, "app").unwrap(), (1000, 1000, vec![50]));
        assert_eq!(resolve(&layers, "1000").unwrap(), (1000, 1000, vec![50]));
        assert_eq!(resolve(&layers, "app:staff").unwrap(), (1000, 50, vec![]));
        assert_eq!(resolve(&layers, "4242:7").unwrap(), (4242, 7, vec![]));
        let err = resolve(&layers, "nobody-here").unwrap_err();
        assert!(err.contains("unable to find user nobody-here"), "{err}");
    }
}
