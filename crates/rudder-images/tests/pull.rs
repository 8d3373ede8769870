//! Pulls from a real registry (Debian's docker-registry, one per test) into a store in a
//! temporary directory.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use base64::Engine as _;
use common::{Recorder, entries, store_for};
use rudder_images::layer::Compression;
use rudder_images::manifest::ManifestError;
use rudder_images::testing::{self, ImageBuilder, Registry};
use rudder_images::{Credentials, NoProgress, RegistryError, StoreError};

#[tokio::test]
async fn pull_anonymous_busybox_unpacks_a_usable_root() {
    let registry = Registry::start(None).unwrap();
    let image = testing::busybox().unwrap();
    testing::push(&registry, "library/busybox:1.0", &image).await.unwrap();
    let s = store_for(&registry);
    let reference = registry.reference("library/busybox:1.0");
    let progress = Recorder::default();
    let record = s.store.pull(&reference, &Credentials::default(), &progress).await.unwrap();

    assert_eq!(record.digest, image.manifest_digest);
    assert_eq!(record.manifest_digest, image.manifest_digest);
    assert_eq!(record.config_digest, image.config_digest);
    assert_eq!(record.names, vec![reference.clone()]);
    assert_eq!(
        record.repo_digests,
        vec![format!("{}/library/busybox@{}", registry.host(), image.manifest_digest)]
    );
    assert_eq!(record.layers.len(), 1);
    assert_eq!(record.layers[0].diff_id, image.layers[0].diff_id);
    assert_eq!(record.layers[0].digest, image.layers[0].digest);
    assert_eq!(record.size_bytes, (image.layers[0].blob.len() + image.config.len()) as u64);
    assert_eq!(record.config.cmd, vec!["sh"]);
    assert_eq!(record.config.env, vec![testing::PATH_ENV]);
    assert_eq!((record.os.as_str(), record.architecture.as_str()), ("linux", "amd64"));

    let dirs = s.store.layer_dirs(&record);
    assert_eq!(dirs.len(), 1);
    let root = &dirs[0];
    assert_eq!(
        std::fs::metadata(root.join("bin/busybox")).unwrap().len(),
        std::fs::metadata(testing::BUSYBOX_PATH).unwrap().len()
    );
    assert_eq!(std::fs::read_link(root.join("bin/sh")).unwrap().to_str(), Some("busybox"));
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("app:x:1000:1000:"), "{passwd}");
    assert!(passwd.contains("nobody:x:65534:65534:"), "{passwd}");
    let tmp = std::fs::metadata(root.join("tmp")).unwrap();
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    assert!(entries(&root.join("tmp")).is_empty());
    assert_eq!(std::fs::metadata(root.join("home/app")).unwrap().uid(), 1000);
    assert_eq!(std::fs::metadata(root).unwrap().permissions().mode() & 0o777, 0o755);

    // Found by name (short or full), digest, config digest and ID prefix.
    for key in [
        reference.clone(),
        format!("{}/library/busybox@{}", registry.host(), image.manifest_digest),
        image.manifest_digest.to_string(),
        image.config_digest.to_string(),
        image.manifest_digest.hex()[..12].to_owned(),
    ] {
        assert_eq!(s.store.get(&key).unwrap().as_ref(), Some(&record), "{key}");
    }
    assert_eq!(s.store.get("busybox:1.0").unwrap(), None);
    assert_eq!(s.store.list().unwrap(), vec![record.clone()]);
    let d = image.layers[0].digest.as_str();
    let events = progress.events.lock().unwrap().clone();
    assert_eq!(
        events,
        vec![
            format!("resolved {} 1", image.manifest_digest),
            format!("started {d}"),
            format!("unpacking {d}"),
            format!("done {d}"),
            format!("finished {}", image.manifest_digest),
        ]
    );
    assert!(entries(&s.store.root().join("tmp")).is_empty());
}

fn docker_config(host: &str, user: &str, password: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#)
}

#[tokio::test]
async fn pull_with_basic_auth_and_a_wrong_password() {
    let registry = Registry::start(Some(("alice", "wonderland"))).unwrap();
    let image = testing::busybox().unwrap();
    testing::push(&registry, "private/busybox:1.0", &image).await.unwrap();
    let s = store_for(&registry);
    let reference = registry.reference("private/busybox:1.0");

    let wrong = Credentials::from_docker_config(
        docker_config(registry.host(), "alice", "looking-glass").as_bytes(),
    )
    .unwrap();
    let err = s.store.pull(&reference, &wrong, &NoProgress).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Registry(RegistryError::Unauthorized { registry: r, .. }) if r == registry.host()),
        "{err:?}"
    );
    assert!(err.to_string().contains("authentication failed"), "{err}");
    let err = s.store.pull(&reference, &Credentials::default(), &NoProgress).await.unwrap_err();
    assert!(matches!(err, StoreError::Registry(RegistryError::Unauthorized { .. })), "{err:?}");
    assert!(s.store.list().unwrap().is_empty());

    // Two secrets for the same registry: the wrong one first, the right one is tried next.
    let right = docker_config(registry.host(), "alice", "wonderland");
    let wrong = docker_config(registry.host(), "alice", "looking-glass");
    let both = Credentials::from_docker_configs([wrong.as_bytes(), right.as_bytes()]).unwrap();
    let record = s.store.pull(&reference, &both, &NoProgress).await.unwrap();
    assert_eq!(record.digest, image.manifest_digest);
}

#[tokio::test]
async fn pull_by_digest() {
    let registry = Registry::start(None).unwrap();
    let image = testing::busybox().unwrap();
    testing::push(&registry, "library/busybox:1.0", &image).await.unwrap();
    let s = store_for(&registry);
    let by_digest = format!("{}/library/busybox@{}", registry.host(), image.manifest_digest);
    let record = s.store.pull(&by_digest, &Credentials::default(), &NoProgress).await.unwrap();
    assert_eq!(record.digest, image.manifest_digest);
    assert!(record.names.is_empty(), "a pull by digest tags nothing: {:?}", record.names);
    assert_eq!(record.repo_digests, vec![by_digest.clone()]);
    assert_eq!(s.store.get(&by_digest).unwrap(), Some(record));

    let other = ImageBuilder::new().files(&[("x", b"x")], Compression::Gzip).build();
    let missing = format!("{}/library/busybox@{}", registry.host(), other.manifest_digest);
    let err = s.store.pull(&missing, &Credentials::default(), &NoProgress).await.unwrap_err();
    assert!(matches!(err, StoreError::Registry(RegistryError::NotFound { .. })), "{err:?}");
}

#[tokio::test]
async fn image_index_selects_linux_amd64() {
    let registry = Registry::start(None).unwrap();
    let amd64 = testing::busybox().unwrap();
    let arm64 = ImageBuilder::new()
        .files(&[("arch", b"arm64")], Compression::Gzip)
        .architecture("arm64")
        .build();
    let index = testing::push_index(&registry, "library/multi:1", &[&arm64, &amd64]).await.unwrap();
    let s = store_for(&registry);
    let record = s
        .store
        .pull(&registry.reference("library/multi:1"), &Credentials::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(record.digest, index);
    assert_eq!(record.manifest_digest, amd64.manifest_digest);
    assert_eq!(record.architecture, "amd64");
    assert_eq!(record.layers[0].diff_id, amd64.layers[0].diff_id);
    assert!(s.store.blob_path(&index).exists());
    assert!(s.store.blob_path(&amd64.manifest_digest).exists());
    assert_eq!(s.store.get(amd64.manifest_digest.as_str()).unwrap(), Some(record));

    testing::push_index(&registry, "library/armonly:1", &[&arm64]).await.unwrap();
    let err = s
        .store
        .pull(&registry.reference("library/armonly:1"), &Credentials::default(), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Manifest(ManifestError::NoPlatform(_))), "{err:?}");
    assert!(err.to_string().contains("linux/arm64"), "{err}");
}

#[tokio::test]
async fn zstd_uncompressed_and_docker_schema2_layers() {
    let registry = Registry::start(None).unwrap();
    let oci = ImageBuilder::new()
        .busybox(Compression::Zstd)
        .unwrap()
        .files(&[("etc/motd", b"plain tar layer\n")], Compression::None)
        .build();
    let docker = ImageBuilder::new()
        .busybox(Compression::None)
        .unwrap()
        .files(&[("etc/motd", b"docker gzip layer\n")], Compression::Gzip)
        .docker_media_types()
        .build();
    assert_eq!(oci.layers[0].media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
    assert_eq!(docker.layers[0].media_type, "application/vnd.docker.image.rootfs.diff.tar");
    testing::push(&registry, "x/oci:zstd", &oci).await.unwrap();
    testing::push(&registry, "x/docker:schema2", &docker).await.unwrap();
    let s = store_for(&registry);
    for (name, image, motd) in [
        ("x/oci:zstd", &oci, "plain tar layer\n"),
        ("x/docker:schema2", &docker, "docker gzip layer\n"),
    ] {
        let record = s
            .store
            .pull(&registry.reference(name), &Credentials::default(), &NoProgress)
            .await
            .unwrap();
        assert_eq!(record.digest, image.manifest_digest);
        let dirs = s.store.layer_dirs(&record);
        assert_eq!(dirs.len(), 2);
        assert!(dirs[0].join("bin/busybox").is_file(), "{name}");
        assert_eq!(std::fs::read_to_string(dirs[1].join("etc/motd")).unwrap(), motd);
    }
    // The busybox layer is the same tar in both (one diff_id): unpacked once.
    assert_eq!(oci.layers[0].diff_id, docker.layers[0].diff_id);
    assert_eq!(entries(&s.store.root().join("layers")).len(), 3);
}

#[tokio::test]
async fn corrupted_blobs_are_refused_with_a_digest_mismatch() {
    let registry = Registry::start(None).unwrap();
    let image = testing::busybox().unwrap();
    testing::push(&registry, "library/busybox:1.0", &image).await.unwrap();
    registry.corrupt_blob(&image.layers[0].digest).unwrap();
    let s = store_for(&registry);
    let progress = Recorder::default();
    let err = s
        .store
        .pull(&registry.reference("library/busybox:1.0"), &Credentials::default(), &progress)
        .await
        .unwrap_err();
    match &err {
        StoreError::Registry(RegistryError::DigestMismatch { expected, .. }) => {
            assert_eq!(expected, image.layers[0].digest.as_str())
        }
        other => panic!("want a digest mismatch, got {other:?}"),
    }
    assert_eq!(progress.count("retry"), 0, "a digest mismatch is not retried");
    assert!(s.store.list().unwrap().is_empty());
    assert!(entries(&s.store.root().join("layers")).is_empty());
    assert!(entries(&s.store.root().join("tmp")).is_empty());

    // A corrupted config is refused too.
    let other = ImageBuilder::new().files(&[("a", b"a")], Compression::Gzip).build();
    testing::push(&registry, "x/other:1", &other).await.unwrap();
    registry.corrupt_blob(&other.config_digest).unwrap();
    let err = s
        .store
        .pull(&registry.reference("x/other:1"), &Credentials::default(), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Registry(RegistryError::DigestMismatch { .. })), "{err:?}");
}

#[tokio::test]
async fn plain_http_only_for_insecure_registries() {
    let registry = Registry::start(None).unwrap();
    testing::push(&registry, "library/busybox:1.0", &testing::busybox().unwrap()).await.unwrap();
    let mut options = registry.store_options();
    options.registry.insecure_registries.clear();
    options.registry.retry.attempts = 1;
    let s = common::store(options);
    let err = s
        .store
        .pull(&registry.reference("library/busybox:1.0"), &Credentials::default(), &NoProgress)
        .await
        .unwrap_err();
    // HTTPS to a plain-HTTP registry fails in the TLS handshake.
    assert!(matches!(err, StoreError::Registry(RegistryError::Transient { .. })), "{err:?}");
    assert!(s.store.list().unwrap().is_empty());
}
