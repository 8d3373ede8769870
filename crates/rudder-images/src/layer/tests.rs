//! Layers built in memory with the tar crate, unpacked into temporary directories.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::*;

fn builder() -> tar::Builder<Vec<u8>> {
    tar::Builder::new(Vec::new())
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, content: &[u8]) {
    let mut h = header(tar::EntryType::Regular, 0o644, content.len() as u64);
    b.append_data(&mut h, path, content).unwrap();
}

fn dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut h, path, io::empty()).unwrap();
}

/// Writes a raw path into the header (the tar crate refuses `..` in `append_data`).
fn raw_entry(
    b: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    path: &str,
    link: Option<&str>,
    content: &[u8],
) {
    let mut h = header(kind, 0o644, content.len() as u64);
    let name = &mut h.as_old_mut().name;
    name[..path.len()].copy_from_slice(path.as_bytes());
    if let Some(l) = link {
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_cksum();
    b.append(&h, content).unwrap();
}

fn unprivileged() -> UnpackOptions {
    UnpackOptions { privileged: false, max_bytes: 1 << 20 }
}

#[test]
fn files_dirs_links_and_modes() {
    let mut b = builder();
    dir(&mut b, "bin");
    let mut h = header(tar::EntryType::Regular, 0o755, 5);
    b.append_data(&mut h, "bin/busybox", &b"#!/sh"[..]).unwrap();
    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, "bin/sh", "busybox").unwrap();
    let mut h = header(tar::EntryType::Link, 0o755, 0);
    b.append_link(&mut h, "bin/ls", "bin/busybox").unwrap();
    raw_entry(&mut b, tar::EntryType::Regular, "/etc/hostname", None, b"x\n"); // absolute paths land inside
    let layer = b.into_inner().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let stats = unpack(&layer[..], Compression::None, dest.path(), unprivileged()).unwrap();
    assert_eq!(stats.entries, 5);
    assert_eq!(stats.bytes, 7);
    let busybox = dest.path().join("bin/busybox");
    assert_eq!(fs::read(&busybox).unwrap(), b"#!/sh");
    assert_eq!(fs::metadata(&busybox).unwrap().permissions().mode() & 0o777, 0o755);
    assert_eq!(fs::read_link(dest.path().join("bin/sh")).unwrap(), Path::new("busybox"));
    assert_eq!(
        fs::metadata(dest.path().join("bin/ls")).unwrap().ino(),
        fs::metadata(&busybox).unwrap().ino()
    );
    assert_eq!(fs::read(dest.path().join("etc/hostname")).unwrap(), b"x\n");
}

#[test]
fn nothing_escapes_the_layer_directory() {
    let outside = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    for (kind, path, link) in [
        (tar::EntryType::Regular, "../escaped", None),
        (tar::EntryType::Regular, "a/../../escaped", None),
        (tar::EntryType::Link, "hard", Some("../../etc/passwd")),
    ] {
        let mut b = builder();
        raw_entry(&mut b, kind, path, link, b"bad");
        let err =
            unpack(&b.into_inner().unwrap()[..], Compression::None, dest.path(), unprivileged())
                .unwrap_err();
        assert!(matches!(err, LayerError::PathEscape { .. }), "{path}: {err}");
    }
    // A symlink to outside, then a file "through" it.
    let mut b = builder();
    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, "evil", outside.path()).unwrap();
    file(&mut b, "evil/planted", b"bad");
    let err = unpack(&b.into_inner().unwrap()[..], Compression::None, dest.path(), unprivileged())
        .unwrap_err();
    assert!(matches!(err, LayerError::PathEscape { .. }), "{err}");
    assert!(fs::read_dir(outside.path()).unwrap().next().is_none(), "nothing was written outside");
}

#[test]
fn compressed_layers_and_the_size_limit() {
    let mut b = builder();
    file(&mut b, "big", &vec![b'z'; 4096]);
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    io::Write::write_all(&mut gz, &tar).unwrap();
    let gz = gz.finish().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let stats = unpack(&gz[..], Compression::Gzip, dest.path(), unprivileged()).unwrap();
    assert_eq!(stats.bytes, 4096);
    let small = UnpackOptions { privileged: false, max_bytes: 1000 };
    let err =
        unpack(&gz[..], Compression::Gzip, tempfile::tempdir().unwrap().path(), small).unwrap_err();
    assert!(matches!(err, LayerError::TooLarge { .. }), "{err}");
    assert_eq!(
        Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd").unwrap(),
        Compression::Zstd
    );
    assert!(Compression::from_media_type("application/x-nope").is_err());
}

#[test]
fn whiteouts_need_privilege_and_are_counted_without_it() {
    let mut b = builder();
    dir(&mut b, "etc");
    file(&mut b, "etc/.wh.motd", b"");
    file(&mut b, "etc/.wh..wh..opq", b"");
    let mut h = header(tar::EntryType::Char, 0o666, 0);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    b.append_data(&mut h, "dev/null", io::empty()).unwrap();
    let layer = b.into_inner().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let stats = unpack(&layer[..], Compression::None, dest.path(), unprivileged()).unwrap();
    assert_eq!((stats.whiteouts, stats.opaque_dirs, stats.skipped), (0, 0, 3));
    assert!(!dest.path().join("etc/motd").exists());
    assert!(!dest.path().join("dev/null").exists());
}

/// Needs root (as CI runs): overlay whiteouts are 0:0 character devices, opaque directories
/// carry a trusted xattr.
#[test]
fn privileged_whiteouts_are_overlay_whiteouts() {
    assert!(nix::unistd::geteuid().is_root(), "this test runs as root, like CI");
    let mut b = builder();
    dir(&mut b, "etc");
    file(&mut b, "etc/motd", b"hello");
    file(&mut b, "etc/.wh.motd", b"");
    dir(&mut b, "var");
    file(&mut b, "var/.wh..wh..opq", b"");
    let layer = b.into_inner().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let options = UnpackOptions { privileged: true, max_bytes: 1 << 20 };
    let stats = unpack(&layer[..], Compression::None, dest.path(), options).unwrap();
    assert_eq!((stats.whiteouts, stats.opaque_dirs), (1, 1));
    let motd = fs::symlink_metadata(dest.path().join("etc/motd")).unwrap();
    assert!(motd.file_type().is_char_device());
    assert_eq!(motd.rdev(), 0);
    assert_eq!(
        xattr::get(dest.path().join("var"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
}
