//! The store around pulls: shared layers, names, removal, garbage collection, concurrency.

mod common;

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use common::{Recorder, entries, store_for};
use rudder_images::layer::Compression;
use rudder_images::testing::{self, ImageBuilder, Registry};
use rudder_images::{Credentials, ImageStore, NoProgress, ProgressEvent, Removed};

#[tokio::test]
async fn shared_layer_is_unpacked_once() {
    let registry = Registry::start(None).unwrap();
    let base = testing::busybox().unwrap();
    let app = ImageBuilder::new()
        .busybox(Compression::Gzip)
        .unwrap()
        .files(&[("app/run.sh", b"echo hi\n")], Compression::Gzip)
        .build();
    assert_eq!(base.layers[0].digest, app.layers[0].digest);
    testing::push(&registry, "library/busybox:1.0", &base).await.unwrap();
    testing::push(&registry, "library/app:1.0", &app).await.unwrap();
    let s = store_for(&registry);
    let first = Recorder::default();
    let a = s
        .store
        .pull(&registry.reference("library/busybox:1.0"), &Credentials::default(), &first)
        .await
        .unwrap();
    let base_dir = s.store.layer_dirs(&a)[0].clone();
    let inode = std::fs::metadata(&base_dir).unwrap().ino();

    let second = Recorder::default();
    let b = s
        .store
        .pull(&registry.reference("library/app:1.0"), &Credentials::default(), &second)
        .await
        .unwrap();
    let shared = app.layers[0].digest.as_str();
    let own = app.layers[1].digest.as_str();
    let events = second.events.lock().unwrap().clone();
    assert!(events.contains(&format!("present {shared}")), "{events:?}");
    assert!(!events.contains(&format!("started {shared}")), "{events:?}");
    assert!(events.contains(&format!("started {own}")), "{events:?}");
    let dirs = s.store.layer_dirs(&b);
    assert_eq!(dirs[0], base_dir);
    assert_eq!(std::fs::metadata(&base_dir).unwrap().ino(), inode, "not unpacked again");
    assert_eq!(std::fs::read_to_string(dirs[1].join("app/run.sh")).unwrap(), "echo hi\n");
    assert_eq!(entries(&s.store.root().join("layers")).len(), 2);

    // Pulling again downloads nothing.
    let third = Recorder::default();
    s.store
        .pull(&registry.reference("library/app:1.0"), &Credentials::default(), &third)
        .await
        .unwrap();
    assert_eq!(third.count("started"), 0);
    assert_eq!(third.count("present"), 2);
}

#[tokio::test]
async fn remove_and_gc_delete_only_unreferenced_layers() {
    let registry = Registry::start(None).unwrap();
    let base = testing::busybox().unwrap();
    let app = ImageBuilder::new()
        .busybox(Compression::Gzip)
        .unwrap()
        .files(&[("app/x", b"x")], Compression::Gzip)
        .build();
    testing::push(&registry, "library/busybox:1.0", &base).await.unwrap();
    testing::push(&registry, "library/app:1.0", &app).await.unwrap();
    testing::push(&registry, "library/app:stable", &app).await.unwrap();
    let s = store_for(&registry);
    let none = Credentials::default();
    let a =
        s.store.pull(&registry.reference("library/busybox:1.0"), &none, &NoProgress).await.unwrap();
    s.store.pull(&registry.reference("library/app:1.0"), &none, &NoProgress).await.unwrap();
    let b =
        s.store.pull(&registry.reference("library/app:stable"), &none, &NoProgress).await.unwrap();
    assert_eq!(b.names.len(), 2, "{:?}", b.names);
    assert_eq!(s.store.list().unwrap().len(), 2);

    // Nothing unreferenced yet.
    let stats = s.store.gc().await.unwrap();
    assert_eq!((stats.layers_removed, stats.blobs_removed, stats.layers_kept), (0, 0, 2));

    // One of two tags: the image stays.
    let stable = registry.reference("library/app:stable");
    assert_eq!(s.store.remove(&stable).unwrap(), Removed::Untagged);
    assert!(s.store.get(&stable).unwrap().is_none());
    assert!(s.store.remove(&stable).is_err(), "already gone");
    // The repo digest still names it.
    let b = s.store.get(&registry.reference("library/app:1.0")).unwrap().unwrap();
    assert_eq!(s.store.remove(&registry.reference("library/app:1.0")).unwrap(), Removed::Untagged);
    let repo_digest = b.repo_digests[0].clone();
    match s.store.remove(&repo_digest).unwrap() {
        Removed::Deleted(r) => assert_eq!(r.digest, app.manifest_digest),
        other => panic!("{other:?}"),
    }
    assert!(s.store.get(app.manifest_digest.as_str()).unwrap().is_none());

    let stats = s.store.gc().await.unwrap();
    assert_eq!(stats.layers_removed, 1, "{stats:?}");
    assert_eq!(stats.layers_kept, 1, "{stats:?}");
    assert_eq!(stats.blobs_removed, 2, "app's manifest and config: {stats:?}");
    let layers = entries(&s.store.root().join("layers"));
    assert_eq!(layers, vec![base.layers[0].diff_id.hex().to_owned()]);
    assert!(s.store.layer_dirs(&a)[0].join("bin/busybox").is_file());
    assert!(!s.store.blob_path(&app.manifest_digest).exists());
    assert!(s.store.blob_path(&base.manifest_digest).exists());

    // A container over base pins its layers: they outlive the image until unpinned.
    s.store.pin("container-1", &s.store.layer_dirs(&a)).unwrap();
    assert!(s.store.pin("../escape", &s.store.layer_dirs(&a)).is_err());
    // Removing by digest removes the image with all its names.
    match s.store.remove(base.manifest_digest.as_str()).unwrap() {
        Removed::Deleted(r) => assert_eq!(r.digest, base.manifest_digest),
        other => panic!("{other:?}"),
    }
    assert!(s.store.list().unwrap().is_empty());
    let stats = s.store.gc().await.unwrap();
    assert_eq!((stats.layers_removed, stats.layers_kept, stats.blobs_removed), (0, 1, 2));
    assert!(s.store.layer_dirs(&a)[0].join("bin/busybox").is_file(), "pinned layer kept");
    // Unpinned, gc empties the store; pinning a layer that is gone fails.
    s.store.unpin("container-1").unwrap();
    s.store.unpin("container-1").unwrap();
    let stats = s.store.gc().await.unwrap();
    assert_eq!((stats.layers_removed, stats.blobs_removed), (1, 0));
    let e = s.store.pin("container-2", &s.store.layer_dirs(&a)).unwrap_err();
    assert!(e.to_string().contains("pull the image again"), "{e}");
    assert!(entries(&s.store.root().join("pins")).is_empty());
    assert!(entries(&s.store.root().join("layers")).is_empty());
    assert!(entries(&s.store.root().join("blobs/sha256")).is_empty());
    assert!(entries(&s.store.root().join("tmp")).is_empty());
}

#[tokio::test]
async fn a_moved_tag_leaves_the_old_image_untagged() {
    let registry = Registry::start(None).unwrap();
    let v1 = testing::busybox().unwrap();
    let v2 = ImageBuilder::new()
        .busybox(Compression::Gzip)
        .unwrap()
        .files(&[("v", b"2")], Compression::Gzip)
        .build();
    let s = store_for(&registry);
    let name = registry.reference("library/app:latest");
    testing::push(&registry, "library/app:latest", &v1).await.unwrap();
    s.store.pull(&name, &Credentials::default(), &NoProgress).await.unwrap();
    testing::push(&registry, "library/app:latest", &v2).await.unwrap();
    let new = s.store.pull(&name, &Credentials::default(), &NoProgress).await.unwrap();
    assert_eq!(new.digest, v2.manifest_digest);
    assert_eq!(s.store.get(&name).unwrap().unwrap().digest, v2.manifest_digest);
    let old = s.store.get(v1.manifest_digest.as_str()).unwrap().unwrap();
    assert!(old.names.is_empty());
    assert_eq!(old.repo_tags()[0].1, "<none>");
    assert_eq!(s.store.list().unwrap().len(), 2);
    let table = rudder_images::cli::format_image_table(&s.store.list().unwrap());
    assert!(table.contains("<none>"), "{table}");
    assert!(table.contains(&v2.manifest_digest.hex()[..12]), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_of_the_same_image() {
    let registry = Registry::start(None).unwrap();
    let image = ImageBuilder::new()
        .busybox(Compression::Gzip)
        .unwrap()
        .files(&[("a", b"a")], Compression::Zstd)
        .files(&[("b", b"b")], Compression::None)
        .build();
    testing::push(&registry, "library/three:1", &image).await.unwrap();
    let s = store_for(&registry);
    let reference = registry.reference("library/three:1");
    let none = Credentials::default();

    // One store (one process): each layer is downloaded once.
    let progress = Recorder::default();
    let (a, b) = tokio::join!(
        s.store.pull(&reference, &none, &progress),
        s.store.pull(&reference, &none, &progress)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    assert_eq!(progress.count("started"), 3, "{:?}", progress.events.lock().unwrap());
    assert_eq!(progress.count("present"), 3);

    // Two stores on one root (like two processes): no layer lock between them, so both may
    // download; the atomic rename keeps the result whole.
    let other_root = s.dir.path().join("shared");
    let one = Arc::new(ImageStore::open(&other_root, registry.store_options()).unwrap());
    let two = Arc::new(ImageStore::open(&other_root, registry.store_options()).unwrap());
    let pulls: Vec<_> = [one.clone(), two.clone(), one.clone(), two.clone()]
        .into_iter()
        .map(|store| {
            let reference = reference.clone();
            tokio::spawn(async move {
                store.pull(&reference, &Credentials::default(), &NoProgress).await
            })
        })
        .collect();
    for p in pulls {
        assert_eq!(p.await.unwrap().unwrap().digest, image.manifest_digest);
    }
    let record = one.get(&reference).unwrap().unwrap();
    let dirs = one.layer_dirs(&record);
    assert!(dirs[0].join("bin/busybox").is_file());
    assert_eq!(std::fs::read(dirs[1].join("a")).unwrap(), b"a");
    assert_eq!(std::fs::read(dirs[2].join("b")).unwrap(), b"b");
    assert_eq!(entries(&other_root.join("layers")).len(), 3);
    assert!(entries(&other_root.join("tmp")).is_empty());
    assert_eq!(one.list().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_does_not_run_while_a_pull_is_in_progress() {
    let registry = Registry::start(None).unwrap();
    let image = testing::busybox().unwrap();
    testing::push(&registry, "library/busybox:1.0", &image).await.unwrap();
    let s = store_for(&registry);
    let store =
        Arc::new(ImageStore::open(s.dir.path().join("gc"), registry.store_options()).unwrap());

    // The pull stops right after its layer is unpacked, before the image is recorded: the
    // moment a gc without the lease would delete the layer.
    let (at_layer_tx, at_layer_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let at_layer_tx = std::sync::Mutex::new(Some(at_layer_tx));
    let go_rx = std::sync::Mutex::new(go_rx);
    let pull = {
        let store = store.clone();
        let reference = registry.reference("library/busybox:1.0");
        tokio::spawn(async move {
            let hold = move |e: &ProgressEvent<'_>| {
                if let ProgressEvent::LayerDone { .. } = e {
                    if let Some(tx) = at_layer_tx.lock().unwrap().take() {
                        tx.send(()).unwrap();
                    }
                    go_rx.lock().unwrap().recv().unwrap();
                }
            };
            store.pull(&reference, &Credentials::default(), &hold).await
        })
    };
    at_layer_rx.await.unwrap();
    let layer = store.layer_dir(&image.layers[0].diff_id);
    assert!(layer.is_dir());
    assert!(store.list().unwrap().is_empty(), "not recorded yet");
    assert_eq!(store.try_gc().await.unwrap(), None, "gc must wait for the pull");
    assert!(layer.is_dir());
    go_tx.send(()).unwrap();
    let record = pull.await.unwrap().unwrap();
    let stats = store.try_gc().await.unwrap().expect("no pull running now");
    assert_eq!(stats.layers_removed, 0);
    assert!(store.layer_dirs(&record)[0].join("bin/busybox").is_file());
}
