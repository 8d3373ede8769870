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
