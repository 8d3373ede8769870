//! The manifests of the seed documents (extracted to `fixtures/seeds/`, see its INDEX.md),
//! through the real kubectl 1.33 with default flags: those in current API versions apply,
//! re-apply as `unchanged` and delete; those in removed versions fail the way they fail
//! against upstream; the three with authoring mistakes are rejected with upstream's errors.

mod common;

use common::Server;

const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seeds");

/// Seeds whose mistakes upstream rejects too, with the error each must produce.
const REJECTED: &[(&str, &str)] = &[
    (
        "005-job-model-train-job.yaml",
        "spec.template.spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers",
    ),
    ("014-job-pi.yaml", "strict decoding error: unknown field \"spec.template.spec.backoffLimit\""),
    (
        "026-pod-volume-example.yaml",
        "strict decoding error: unknown field \"spec.containers[0].volumeMounts[0].ReadOnly\"",
    ),
];

const CURRENT: &[&str] = &[
    "v1",
    "apps/v1",
    "batch/v1",
    "networking.k8s.io/v1",
    "storage.k8s.io/v1",
    "rbac.authorization.k8s.io/v1",
    "policy/v1",
    "autoscaling/v1",
    "autoscaling/v2",
];

fn api_version(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("apiVersion:"))
        .map(|v| v.trim().to_owned())
        .expect("manifest has an apiVersion")
}

#[test]
fn seed_manifests_behave_as_against_upstream() {
    let s = Server::start();
    let mut files: Vec<_> = std::fs::read_dir(SEEDS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "fixtures present: {}", files.len());
    let mut applied = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let file = path.to_str().unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        let version = api_version(&text);
        if let Some((_, error)) = REJECTED.iter().find(|(f, _)| *f == name) {
            let err = s.kubectl_fails(&["apply", "-f", file], None);
            assert!(err.contains(error), "{name}: {err}");
        } else if !CURRENT.contains(&version.as_str()) {
            let err = s.kubectl_fails(&["apply", "-f", file], None);
            assert!(
                err.contains(&format!("in version \"{version}\""))
                    && err.contains("no matches for kind"),
                "{name}: {err}"
            );
        } else {
            let out = s.kubectl(&["apply", "-f", file]);
            assert!(
                out.contains(" created")
                    || out.contains(" configured")
                    || out.contains(" unchanged"),
                "{name}: {out}"
            );
            let again = s.kubectl(&["apply", "-f", file]);
            assert!(again.lines().all(|l| l.ends_with(" unchanged")), "{name} re-applied: {again}");
            let described = s.kubectl(&["describe", "-f", file]);
            assert!(described.contains("Name:"), "{name} describes: {described}");
            applied.push((name, file.to_owned()));
        }
    }
    assert!(applied.len() >= 25, "{} seeds applied", applied.len());

    // Modified, a seed applies as configured (the ml-model-serving Deployment, 10 replicas).
    let (_, deploy) = applied.iter().find(|(n, _)| n.starts_with("002-")).unwrap();
    let changed = std::fs::read_to_string(deploy).unwrap().replace("replicas: 10", "replicas: 4");
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(&changed));
    assert!(out.contains("deployment.apps/ml-model-serving configured"), "{out}");
    assert_eq!(
        s.kubectl(&["get", "deploy", "ml-model-serving", "-o", "jsonpath={.spec.replicas}"]),
        "4"
    );

    for (name, file) in applied.iter().rev() {
        if name.contains("namespace") {
            continue; // namespaces stay Terminating until the namespace controller exists
        }
        let out = s.kubectl(&["delete", "-f", file, "--ignore-not-found", "--wait=false"]);
        assert!(out.is_empty() || out.contains(" deleted"), "{name}: {out}");
    }
}
