//! Importing OCI-layout and docker-archive tarballs.

mod common;

use std::io::Write;

use common::{Recorder, entries, store};
use rudder_images::layer::Compression;
use rudder_images::testing::{self, ImageBuilder, Registry};
use rudder_images::{Credentials, DigestError, StoreError, StoreOptions};

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn import_oci_layout() {
    let s = store(StoreOptions::default());
    let image = testing::busybox().unwrap();
    let tar = testing::oci_layout_tar(&image, &["busybox:1.0", "example.com/tools/busybox:stable"])
        .unwrap();
    let path = write(s.dir.path(), "busybox-oci.tar", &tar);
    let records = s.store.import(&path).await.unwrap();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.digest, image.manifest_digest);
    assert_eq!(r.config_digest, image.config_digest);
    assert_eq!(r.names, vec!["docker.io/library/busybox:1.0", "example.com/tools/busybox:stable"]);
    assert!(r.repo_digests.is_empty());
    assert_eq!(r.config.cmd, vec!["sh"]);
    assert!(s.store.layer_dirs(r)[0].join("bin/busybox").is_file());
    assert_eq!(s.store.get("busybox:1.0").unwrap().as_ref(), Some(r));
    assert!(entries(&s.store.root().join("tmp")).is_empty());

    // Without names: imported untagged, found by digest.
    let other = ImageBuilder::new().files(&[("f", b"1")], Compression::Zstd).build();
    let path = write(s.dir.path(), "other.tar", &testing::oci_layout_tar(&other, &[]).unwrap());
    let records = s.store.import(&path).await.unwrap();
    assert!(records[0].names.is_empty());
    assert_eq!(
        s.store.get(other.manifest_digest.as_str()).unwrap().unwrap().digest,
        other.manifest_digest
    );
}

#[tokio::test]
async fn import_docker_archive_with_gzip_and_plain_layers() {
    let s = store(StoreOptions::default());
    let image = ImageBuilder::new()
        .busybox(Compression::Gzip)
        .unwrap()
        .files(&[("etc/motd", b"docker save\n")], Compression::None)
        .docker_media_types()
        .build();
    let tar =
        testing::docker_archive_tar(&image, &["app:1.0", "registry.local:5000/app:1.0"]).unwrap();
    // `docker save | gzip` works too.
    let path = write(s.dir.path(), "app.tar.gz", &gzip(&tar));
    let records = s.store.import(&path).await.unwrap();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.names, vec!["docker.io/library/app:1.0", "registry.local:5000/app:1.0"]);
    assert_eq!(r.config_digest, image.config_digest);
    // The manifest is synthesised from the archive (docker archives carry none).
    assert_eq!(r.digest, r.manifest_digest);
    assert_eq!(r.layers[0].digest, image.layers[0].digest);
    assert_eq!(r.layers[0].media_type, "application/vnd.oci.image.layer.v1.tar+gzip");
    assert_eq!(r.layers[1].media_type, "application/vnd.oci.image.layer.v1.tar");
    let dirs = s.store.layer_dirs(r);
    assert!(dirs[0].join("bin/busybox").is_file());
    assert_eq!(std::fs::read_to_string(dirs[1].join("etc/motd")).unwrap(), "docker save\n");
    assert!(s.store.blob_path(&r.manifest_digest).exists());
    // Importing again changes nothing.
    let again = s.store.import(&path).await.unwrap();
    assert_eq!(&again[0], r);
    assert_eq!(s.store.list().unwrap().len(), 1);
}

#[tokio::test]
async fn import_refuses_corrupted_tarballs() {
    let s = store(StoreOptions::default());
    let image = ImageBuilder::new().files(&[("data", &[7u8; 4096][..])], Compression::None).build();

    // OCI layout: one byte of the layer blob changed.
    let mut tar = testing::oci_layout_tar(&image, &["x:1"]).unwrap();
    let at = find(&tar, &[7u8; 64]).expect("the layer bytes are in the tarball");
    tar[at] ^= 1;
    let path = write(s.dir.path(), "bad-oci.tar", &tar);
    let err = s.store.import(&path).await.unwrap_err();
    assert!(matches!(err, StoreError::Digest(DigestError::Mismatch { .. })), "{err:?}");

    // Docker archive: the layer no longer matches the config's diff_id.
    let mut tar = testing::docker_archive_tar(&image, &["x:1"]).unwrap();
    let at = find(&tar, &[7u8; 64]).unwrap();
    tar[at] ^= 1;
    let path = write(s.dir.path(), "bad-docker.tar", &tar);
    let err = s.store.import(&path).await.unwrap_err();
    assert!(matches!(err, StoreError::Digest(DigestError::Mismatch { .. })), "{err:?}");

    // Not an image tarball at all.
    let path =
        write(s.dir.path(), "empty.tar", &testing::tar_layer(&[testing::Entry::file("a", b"a")]));
    let err = s.store.import(&path).await.unwrap_err();
    assert!(matches!(err, StoreError::Import { .. }), "{err:?}");

    assert!(s.store.list().unwrap().is_empty());
    assert!(entries(&s.store.root().join("layers")).is_empty());
    assert!(entries(&s.store.root().join("tmp")).is_empty());
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn imported_layers_are_shared_with_pulls() {
    let registry = Registry::start(None).unwrap();
    let image = testing::busybox().unwrap();
    testing::push(&registry, "library/busybox:1.0", &image).await.unwrap();
    let s = store(registry.store_options());
    let tar = testing::docker_archive_tar(&image, &["busybox:1.0"]).unwrap();
    let path = write(s.dir.path(), "busybox.tar", &tar);
    s.store.import(&path).await.unwrap();
    let progress = Recorder::default();
    let pulled = s
        .store
        .pull(&registry.reference("library/busybox:1.0"), &Credentials::default(), &progress)
        .await
        .unwrap();
    assert_eq!(progress.count("started"), 0, "{:?}", progress.events.lock().unwrap());
    assert_eq!(progress.count("present"), 1);
    assert_eq!(pulled.digest, image.manifest_digest);
    // The manifest synthesised for the archive is byte for byte the one the test image was
    // pushed with (same OCI media types, same blobs), so both are one image.
    assert_eq!(
        pulled.names,
        vec![registry.reference("library/busybox:1.0"), "docker.io/library/busybox:1.0".into()]
    );
    assert_eq!(s.store.list().unwrap().len(), 1);
    assert_eq!(entries(&s.store.root().join("layers")).len(), 1);
}
