//! `rudder image pull|import|ls|rm` as a user runs them, against a real docker-registry.

use std::process::Command;

use rudder_images::testing;

fn rudder(data_dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rudder"))
        .arg("image")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn pull_list_remove_and_import() {
    let registry = testing::Registry::start(Some(("bob", "pw"))).unwrap();
    let image = testing::busybox().unwrap();
    testing::push(&registry, "library/busybox:1.0", &image).await.unwrap();
    let reference = registry.reference("library/busybox:1.0");
    let dir = tempfile::tempdir().unwrap();

    let denied = rudder(dir.path(), &["pull", &reference]);
    assert!(!denied.status.success());
    assert!(!String::from_utf8_lossy(&denied.stderr).contains("panicked"));

    let out = rudder(dir.path(), &["pull", &reference, "--creds", "bob:pw"]);
    let digest = ok(&out).trim().to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let ls = ok(&rudder(dir.path(), &["ls"]));
    assert!(ls.starts_with("REPOSITORY"), "{ls}");
    assert!(
        ls.contains(&format!("{}/library/busybox", registry.host())) && ls.contains("1.0"),
        "{ls}"
    );

    ok(&rudder(dir.path(), &["rm", &reference]));
    assert!(!ok(&rudder(dir.path(), &["ls"])).contains("busybox"));
    let layers = std::fs::read_dir(dir.path().join("images/layers")).unwrap().count();
    assert_eq!(layers, 0, "rm garbage-collects the unreferenced layer");
    let missing = rudder(dir.path(), &["rm", "nothing-like-this"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such image"));

    let tarball = dir.path().join("busybox-oci.tar");
    std::fs::write(
        &tarball,
        testing::oci_layout_tar(&image, &["example.com/tools/busybox:2.0"]).unwrap(),
    )
    .unwrap();
    let out = ok(&rudder(dir.path(), &["import", tarball.to_str().unwrap()]));
    assert!(out.contains("example.com/tools/busybox:2.0"), "{out}");
    assert!(ok(&rudder(dir.path(), &["ls"])).contains("example.com/tools/busybox"));
}

/// The agent's runtime pins a container's layers next to its records under /run; `rudder
/// image rm` (whose gc runs in another process) must see those pins and keep the layers.
#[tokio::test]
async fn rm_keeps_the_layers_a_container_of_the_node_pins() {
    let dir = tempfile::tempdir().unwrap();
    let run = rudder_runtime_native::layout::node_run_dirs(dir.path())[1].clone();
    struct RemoveRun(std::path::PathBuf);
    impl Drop for RemoveRun {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _run = RemoveRun(run.clone());
    let tarball = dir.path().join("busybox-oci.tar");
    let image = testing::busybox().unwrap();
    std::fs::write(&tarball, testing::oci_layout_tar(&image, &["example.com/pinned:1"]).unwrap())
        .unwrap();
    ok(&rudder(dir.path(), &["import", tarball.to_str().unwrap()]));

    // What the node's runtime does when it creates a container over the image.
    let options = rudder_images::StoreOptions {
        pins_dir: Some(rudder_runtime_native::layout::pins_dir(&run)),
        ..Default::default()
    };
    let store = rudder_images::ImageStore::open(dir.path().join("images"), options).unwrap();
    let record = store.get("example.com/pinned:1").unwrap().unwrap();
    let layers = store.layer_dirs(&record);
    store.pin("0123456789abcdef0123456789abcdef", &layers).unwrap();

    ok(&rudder(dir.path(), &["rm", "example.com/pinned:1"]));
    assert!(!ok(&rudder(dir.path(), &["ls"])).contains("pinned"));
    assert!(layers.iter().all(|l| l.is_dir()), "rm deleted a pinned layer");

    store.unpin("0123456789abcdef0123456789abcdef").unwrap();
    ok(&rudder(dir.path(), &["import", tarball.to_str().unwrap()]));
    ok(&rudder(dir.path(), &["rm", "example.com/pinned:1"]));
    assert!(layers.iter().all(|l| !l.exists()), "unpinned layers stay");
}
