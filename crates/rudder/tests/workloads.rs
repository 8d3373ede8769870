//! The workload kinds of the seeds end to end: real kubectl 1.33 against `rudder server`
//! (scheduler and controller manager) with `rudder sim nodes` playing the nodes.

mod common;

use common::{Server, Sim, eventually};

fn seed(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/seeds/{name}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
}

fn names(s: &Server, args: &[&str]) -> Vec<String> {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "jsonpath={.items[*].metadata.name}"]);
    s.kubectl(&a).split_whitespace().map(str::to_owned).collect()
}

fn live_pods(s: &Server, args: &[&str]) -> Vec<(String, String)> {
    let mut a = vec!["get", "pods"];
    a.extend_from_slice(args);
    a.extend_from_slice(&[
        "-o",
        "jsonpath={range .items[?(@.metadata.deletionTimestamp)]}{.metadata.name}{\"\\n\"}{end}",
    ]);
    let terminating: Vec<String> = s.kubectl(&a).lines().map(str::to_owned).collect();
    let mut a = vec!["get", "pods"];
    a.extend_from_slice(args);
    a.extend_from_slice(&[
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName}{\"\\n\"}{end}",
    ]);
    s.kubectl(&a)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(p, n)| (p.to_owned(), n.to_owned())))
        .filter(|(p, _)| !terminating.contains(p))
        .collect()
}

#[test]
fn seed_daemonset_lands_on_every_node_and_follows_joins_and_leaves() {
    let s = Server::start();
    let _workers = Sim::start(&s, &["--count", "2", "--prefix", "worker"]);
    let _master = Sim::start(
        &s,
        &[
            "--count",
            "1",
            "--prefix",
            "master",
            "--taint",
            "node-role.kubernetes.io/master:NoSchedule",
        ],
    );
    s.kubectl_stdin(&["apply", "-f", "-"], Some(&seed("013-daemonset-fluentd-elasticsearch.yaml")));
    let want = |n: usize| {
        eventually(&format!("{n} fluentd pods, one per node"), || {
            let pods = live_pods(&s, &["-n", "kube-system", "-l", "name=fluentd-elasticsearch"]);
            let mut nodes: Vec<&str> = pods.iter().map(|(_, n)| n.as_str()).collect();
            nodes.sort();
            nodes.dedup();
            (pods.len() == n && nodes.len() == n && !nodes.contains(&""))
                .then_some(nodes.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        })
    };
    let nodes = want(3);
    assert!(
        nodes.contains(&"master-0".to_owned()),
        "the master-tainted node is tolerated: {nodes:?}"
    );
    let table = s.kubectl(&["get", "ds", "-n", "kube-system", "fluentd-elasticsearch"]);
    assert!(table.contains("DESIRED") && table.contains("fluentd-elasticsearch   3 "), "{table}");

    // A node joins: it gets a pod. A node leaves: its pod goes.
    let joined = Sim::start(&s, &["--count", "1", "--prefix", "late"]);
    let nodes = want(4);
    assert!(nodes.contains(&"late-0".to_owned()));
    drop(joined);
    s.kubectl(&["delete", "node", "late-0"]);
    let nodes = want(3);
    assert!(!nodes.contains(&"late-0".to_owned()));
}

#[test]
fn seed_statefulset_is_ordered_and_keeps_its_local_path_claims() {
    let s = Server::start();
    let _nodes = Sim::start(&s, &["--count", "2"]);
    s.kubectl_stdin(&["apply", "-f", "-"], Some(&seed("022-service-app.yaml")));
    // The seed asks for class `standard` (a cloud disk); here its claims come from the
    // built-in default class, local-path.
    let sts =
        seed("021-statefulset-sts-example.yaml").replace("      storageClassName: standard\n", "");
    assert!(!sts.lines().any(|l| l.trim_start().starts_with("storageClassName")));
    let default_class = s.kubectl(&["get", "storageclass"]);
    assert!(default_class.contains("local-path (default)"), "{default_class}");
    s.kubectl_stdin(&["apply", "-f", "-"], Some(&sts));
    eventually("sts-example-0 and -1 running with bound claims", || {
        let pods = names(&s, &["pods", "-l", "app=stateful"]);
        let bound = s.kubectl(&[
            "get",
            "pvc",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.phase} {end}",
        ]);
        (pods == ["sts-example-0", "sts-example-1"]
            && bound.contains("www-sts-example-0=Bound")
            && bound.contains("www-sts-example-1=Bound"))
        .then_some(())
    });
    // In order: -0 was Ready before -1 was created.
    let ready0 = s.kubectl(&[
        "get",
        "pod",
        "sts-example-0",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].lastTransitionTime}",
    ]);
    let created1 =
        s.kubectl(&["get", "pod", "sts-example-1", "-o", "jsonpath={.metadata.creationTimestamp}"]);
    assert!(ready0 <= created1, "sts-example-0 Ready at {ready0}, -1 created at {created1}");
    // Each claim got its own local-path volume, pinned to the pod's node.
    let pv = s.kubectl(&["get", "pvc", "www-sts-example-1", "-o", "jsonpath={.spec.volumeName}"]);
    let affinity = s.kubectl(&[
        "get",
        "pv",
        &pv,
        "-o",
        "jsonpath={.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]}",
    ]);
    let node1 = s.kubectl(&["get", "pod", "sts-example-1", "-o", "jsonpath={.spec.nodeName}"]);
    assert_eq!(affinity, node1);
    let uid1 = s.kubectl(&["get", "pvc", "www-sts-example-1", "-o", "jsonpath={.metadata.uid}"]);

    // Scale down: -1 goes, its claim stays. Scale up: -1 comes back on the same claim.
    s.kubectl(&["scale", "statefulset", "sts-example", "--replicas=1"]);
    eventually("sts-example-1 gone", || {
        (live_pods(&s, &["-l", "app=stateful"]).len() == 1).then_some(())
    });
    assert_eq!(names(&s, &["pvc"]), ["www-sts-example-0", "www-sts-example-1"]);
    s.kubectl(&["scale", "statefulset", "sts-example", "--replicas=2"]);
    eventually("sts-example-1 back and ready", || {
        let ready =
            s.kubectl(&["get", "sts", "sts-example", "-o", "jsonpath={.status.readyReplicas}"]);
        (ready == "2").then_some(())
    });
    assert_eq!(
        s.kubectl(&["get", "pvc", "www-sts-example-1", "-o", "jsonpath={.metadata.uid}"]),
        uid1
    );
    let claim = s.kubectl(&[
        "get",
        "pod",
        "sts-example-1",
        "-o",
        "jsonpath={.spec.volumes[?(@.name==\"www\")].persistentVolumeClaim.claimName}",
    ]);
    assert_eq!(claim, "www-sts-example-1");
}

#[test]
fn seed_jobs_complete_and_a_failing_job_stops_at_its_backoff_limit() {
    let s = Server::start();
    let _nodes = Sim::start(&s, &["--count", "2", "--succeed-after", "200ms"]);
    // The seed's pi Job, with its misplaced fields put where batch/v1 has them.
    let pi = seed("014-job-pi.yaml").replace(
        "        restartPolicy: Never\n      backoffLimit: 4\n",
        "      restartPolicy: Never\n  backoffLimit: 4\n",
    );
    s.kubectl_stdin(&["apply", "-f", "-"], Some(&pi));
    // The seed's cronjob-example job template as a Job: completions 4, parallelism 2.
    let parallel = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: parallel}\nspec:\n  completions: 4\n  parallelism: 2\n  template:\n    spec:\n      containers:\n      - {name: hello, image: alpine:latest, command: [/bin/sh, -c], args: [\"echo hello from $HOSTNAME!\"]}\n      restartPolicy: Never\n";
    s.kubectl_stdin(&["apply", "-f", "-"], Some(parallel));
    let failing = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: failing}\nspec:\n  backoffLimit: 2\n  template:\n    metadata:\n      annotations: {sim.rudder.dev/exit-code: \"1\", sim.rudder.dev/exit-after-ms: \"100\"}\n    spec:\n      containers:\n      - {name: main, image: busybox}\n      restartPolicy: Never\n";
    s.kubectl_stdin(&["apply", "-f", "-"], Some(failing));
    s.kubectl(&["wait", "--for=condition=complete", "job/pi", "job/parallel", "--timeout=60s"]);
    assert_eq!(s.kubectl(&["get", "job", "parallel", "-o", "jsonpath={.status.succeeded}"]), "4");
    assert_eq!(s.kubectl(&["get", "job", "pi", "-o", "jsonpath={.status.succeeded}"]), "1");
    let table = s.kubectl(&["get", "jobs"]);
    assert!(table.contains("STATUS") && table.contains("COMPLETIONS"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("parallel") && l.contains("Complete") && l.contains("4/4")),
        "{table}"
    );
    // The failing Job: backoffLimit 2 means 3 failed pods, then Failed/BackoffLimitExceeded
    // (the back-off between retries is 10 s, then 20 s).
    let reason = eventually("the failing job to fail", || {
        let r = s.kubectl(&[
            "get",
            "job",
            "failing",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Failed\")].reason}",
        ]);
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(reason, "BackoffLimitExceeded");
    assert_eq!(s.kubectl(&["get", "job", "failing", "-o", "jsonpath={.status.failed}"]), "3");
}

#[test]
fn cronjob_schedules_and_time_zones_are_validated() {
    let s = Server::start_args(&["--disable-controller-manager", "--disable-scheduler"]);
    let err = s.kubectl_fails(
        &["create", "cronjob", "tz", "--image=busybox", "--schedule=TZ=UTC * * * * *"],
        None,
    );
    assert!(
        err.contains("spec.schedule: Invalid value")
            && err.contains("cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
        "{err}"
    );
    let err = s.kubectl_fails(
        &["create", "cronjob", "bad", "--image=busybox", "--schedule=61 * * * *"],
        None,
    );
    assert!(err.contains("spec.schedule: Invalid value: \"61 * * * *\""), "{err}");
    let zone = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: zone}\nspec:\n  schedule: '0 * * * *'\n  timeZone: Mars/Olympus\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{name: c, image: busybox}]\n";
    let err = s.kubectl_fails(&["apply", "-f", "-"], Some(zone));
    assert!(err.contains("spec.timeZone: Invalid value: \"Mars/Olympus\""), "{err}");
    // The seed's schedule and a real zone are fine.
    s.kubectl(&["create", "cronjob", "ok", "--image=busybox", "--schedule=*/1 * * * *"]);
    s.kubectl_stdin(&["apply", "-f", "-"], Some(&zone.replace("Mars/Olympus", "Europe/Berlin")));
}
