use super::*;

fn file(data: &str, mode: u32) -> FileProjection {
    FileProjection { data: data.as_bytes().to_vec(), mode }
}

fn payload(files: &[(&str, &str, u32)]) -> Payload {
    files.iter().map(|(p, d, m)| ((*p).to_owned(), file(d, *m))).collect()
}

fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn first_write_creates_version_data_link_and_key_links() {
    let dir = tempfile::tempdir().unwrap();
    let p = payload(&[("a", "1", 0o644), ("sub/b", "2", 0o600)]);
    assert!(write(dir.path(), &p).unwrap());
    let version = current_version(dir.path()).unwrap().unwrap();
    assert!(version.starts_with(".."), "{version}");
    assert_eq!(
        entries(dir.path()),
        BTreeSet::from([version.clone(), "..data".into(), "a".into(), "sub".into()])
    );
    assert_eq!(std::fs::read_link(dir.path().join("a")).unwrap(), PathBuf::from("..data/a"));
    assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "1");
    assert_eq!(std::fs::read_to_string(dir.path().join("sub/b")).unwrap(), "2");
    assert_eq!(mode(&dir.path().join("a")), 0o644);
    assert_eq!(mode(&dir.path().join("sub/b")), 0o600);
}

#[test]
fn unchanged_payload_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = payload(&[("a", "1", 0o644)]);
    assert!(write(dir.path(), &p).unwrap());
    let before = current_version(dir.path()).unwrap();
    assert!(!write(dir.path(), &p).unwrap());
    assert_eq!(current_version(dir.path()).unwrap(), before);
    // A mode change alone is a change.
    assert!(write(dir.path(), &payload(&[("a", "1", 0o400)])).unwrap());
    assert_eq!(mode(&dir.path().join("a")), 0o400);
}

#[test]
fn update_swaps_version_and_removes_keys_that_went_away() {
    let dir = tempfile::tempdir().unwrap();
    assert!(write(dir.path(), &payload(&[("a", "1", 0o644), ("gone", "x", 0o644)])).unwrap());
    let old = current_version(dir.path()).unwrap().unwrap();
    // A reader holding the old version keeps seeing it whole until the swap.
    let old_a = std::fs::read_to_string(dir.path().join(&old).join("a")).unwrap();
    assert_eq!(old_a, "1");
    assert!(write(dir.path(), &payload(&[("a", "2", 0o644), ("new", "n", 0o644)])).unwrap());
    let new = current_version(dir.path()).unwrap().unwrap();
    assert_ne!(old, new);
    assert_eq!(std::fs::read_to_string(dir.path().join("a")).unwrap(), "2");
    assert_eq!(std::fs::read_to_string(dir.path().join("new")).unwrap(), "n");
    assert_eq!(
        entries(dir.path()),
        BTreeSet::from([new, "..data".into(), "a".into(), "new".into()])
    );
}

#[test]
fn stale_versions_from_interrupted_writes_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let p = payload(&[("a", "1", 0o644)]);
    assert!(write(dir.path(), &p).unwrap());
    std::fs::create_dir(dir.path().join("..2000_01_01_00_00_00.1")).unwrap();
    assert!(!write(dir.path(), &p).unwrap());
    assert!(!dir.path().join("..2000_01_01_00_00_00.1").exists());
}

#[test]
fn key_links_never_remove_what_they_point_to() {
    // A name that went away whose entry is not our link (e.g. a directory someone made) stays.
    let dir = tempfile::tempdir().unwrap();
    assert!(write(dir.path(), &payload(&[("a", "1", 0o644)])).unwrap());
    std::fs::create_dir(dir.path().join("other")).unwrap();
    std::fs::write(dir.path().join("other/keep"), "k").unwrap();
    assert!(write(dir.path(), &payload(&[("b", "2", 0o644)])).unwrap());
    assert!(dir.path().join("other/keep").exists());
    assert!(std::fs::symlink_metadata(dir.path().join("a")).is_err());
}

#[test]
fn invalid_paths_are_refused() {
    assert!(validate_path("a/b").is_ok());
    assert!(validate_path("").is_err());
    assert_eq!(validate_path("/etc/x").unwrap_err(), "invalid path: must be relative path: /etc/x");
    assert_eq!(
        validate_path("a/../../x").unwrap_err(),
        "invalid path: must not contain '..': a/../../x"
    );
    assert!(validate_path("..data").is_err());
    let dir = tempfile::tempdir().unwrap();
    assert!(write(dir.path(), &payload(&[("../x", "1", 0o644)])).is_err());
    assert!(write(dir.path(), &payload(&[("a", "1", 0o644), ("a/b", "2", 0o644)])).is_err());
    assert!(entries(dir.path()).is_empty());
}
