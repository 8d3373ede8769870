//! End-to-end: the real kubectl 1.33 against a real `rudder server` process (TLS, client
//! certificates, SQLite store). Each test runs its own server on a free port with its own
//! data dir; the server is killed when the test ends, pass or fail.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use common::{DEADLINE, KUBECTL, Server};

const MANIFEST: &str = "
apiVersion: v1
kind: ConfigMap
metadata:
  name: game-config
  labels:
    app: game
data:
  lives: \"3\"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ml-model-serving
  labels:
    app: ml-model
spec:
  replicas: 10
  selector:
    matchLabels:
      app: ml-model
  template:
    metadata:
      labels:
        app: ml-model
    spec:
      containers:
        - name: ml-rest-server
          image: ml-serving:1.0
          ports:
            - containerPort: 80
";

#[test]
fn version_discovery_and_default_namespaces() {
    let s = Server::start();
    let version = s.kubectl(&["version"]);
    assert!(version.contains("Server Version: v1.33"), "{version}");

    let resources = s.kubectl(&["api-resources"]);
    let deploy =
        resources.lines().find(|l| l.starts_with("deployments ")).expect("deployments listed");
    assert!(
        deploy.contains("deploy") && deploy.contains("apps/v1") && deploy.contains("Deployment"),
        "{deploy}"
    );
    for short in ["po", "svc", "cm", "ns", "ds", "sts", "cj", "ing", "pvc", "hpa", "sa", "ep", "no"]
    {
        assert!(
            resources.lines().any(|l| l.split_whitespace().nth(1) == Some(short)),
            "short name {short} missing from api-resources"
        );
    }
    let versions = s.kubectl(&["api-versions"]);
    for gv in [
        "v1",
        "apps/v1",
        "batch/v1",
        "networking.k8s.io/v1",
        "autoscaling/v2",
        "rbac.authorization.k8s.io/v1",
    ] {
        assert!(versions.lines().any(|l| l == gv), "{gv} missing from api-versions");
    }

    let ready = s.kubectl(&["get", "--raw", "/readyz?verbose"]);
    assert!(ready.contains("[+]storage ok") && ready.contains("readyz check passed"), "{ready}");
    assert_eq!(s.kubectl(&["get", "--raw", "/livez"]), "ok");
    let info = s.kubectl(&["cluster-info"]);
    assert!(info.contains("Kubernetes control plane is running at https://127.0.0.1:"), "{info}");
    let cs = s.kubectl_raw(&["get", "componentstatuses"], None);
    let stdout = String::from_utf8_lossy(&cs.stdout);
    assert!(cs.status.success());
    assert!(String::from_utf8_lossy(&cs.stderr).contains("ComponentStatus is deprecated"));
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("storage") && l.contains("Healthy") && l.contains("sqlite ok")),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("scheduler") && l.contains("Unhealthy")),
        "{stdout}"
    );
    let ns = s.kubectl(&["get", "ns", "--show-labels"]);
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let line = ns
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{ns}"));
        assert!(line.contains("Active"), "{line}");
        assert!(line.contains(&format!("kubernetes.io/metadata.name={name}")), "{line}");
    }
}

#[test]
fn apply_reapply_configure_and_delete() {
    let s = Server::start();
    let apply = ["apply", "-f", "-"];
    let out = s.kubectl_stdin(&apply, Some(MANIFEST));
    assert!(out.contains("configmap/game-config created"), "{out}");
    assert!(out.contains("deployment.apps/ml-model-serving created"), "{out}");
    let out = s.kubectl_stdin(&apply, Some(MANIFEST));
    assert!(out.contains("configmap/game-config unchanged"), "{out}");
    assert!(out.contains("deployment.apps/ml-model-serving unchanged"), "{out}");
    let changed = MANIFEST
        .replace("lives: \"3\"", "lives: \"5\"")
        .replace("ml-serving:1.0", "ml-serving:2.0");
    let out = s.kubectl_stdin(&apply, Some(&changed));
    assert!(out.contains("configmap/game-config configured"), "{out}");
    assert!(out.contains("deployment.apps/ml-model-serving configured"), "{out}");

    let image = s.kubectl(&[
        "get",
        "deploy",
        "ml-model-serving",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "ml-serving:2.0");
    let generation =
        s.kubectl(&["get", "deploy", "ml-model-serving", "-o", "jsonpath={.metadata.generation}"]);
    assert_eq!(generation, "2", "a spec change bumps the generation");
    let defaults = s.kubectl(&[
        "get", "deploy", "ml-model-serving", "-o",
        "jsonpath={.spec.strategy.type} {.spec.strategy.rollingUpdate.maxSurge} {.spec.revisionHistoryLimit} {.spec.template.spec.restartPolicy} {.spec.template.spec.containers[0].imagePullPolicy}",
    ]);
    assert_eq!(defaults, "RollingUpdate 25% 10 Always IfNotPresent", "upstream defaults");
    let table = s.kubectl(&["get", "deployments"]);
    let header = table.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    assert!(table.contains("ml-model-serving") && table.contains("0/10"), "{table}");
    let names = s.kubectl(&["get", "cm", "-o", "name"]);
    assert!(names.lines().any(|l| l == "configmap/game-config"), "{names}");

    let columns =
        s.kubectl(&["get", "cm", "-o", "custom-columns=NAME:.metadata.name,LIVES:.data.lives"]);
    assert!(
        columns.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["game-config", "5"]),
        "{columns}"
    );
    let describe = s.kubectl(&["describe", "deployment", "ml-model-serving"]);
    assert!(describe.contains("StrategyType:           RollingUpdate"), "{describe}");
    assert!(describe.contains("ml-serving:2.0") && describe.contains("Events:"), "{describe}");
    for kind in ["configmap/game-config", "service/kubernetes", "namespace/default"] {
        let out = s.kubectl(&["describe", kind]);
        assert!(out.contains("Name:"), "{kind}: {out}");
    }
    // diff: exit code 1 and the changed line when the manifest differs from the live object.
    let drift = MANIFEST.replace("lives: \"3\"", "lives: \"7\"");
    let diff = s.kubectl_raw(&["diff", "-f", "-"], Some(&drift));
    assert_eq!(diff.status.code(), Some(1), "{}", String::from_utf8_lossy(&diff.stderr));
    assert!(String::from_utf8_lossy(&diff.stdout).contains("+  lives: \"7\""));
    let out = s.kubectl_stdin(&["delete", "-f", "-"], Some(MANIFEST));
    assert!(out.contains("configmap \"game-config\" deleted"), "{out}");
    let err = s.kubectl_fails(&["get", "cm", "game-config"], None);
    assert!(err.contains("configmaps \"game-config\" not found"), "{err}");
}

#[test]
fn label_annotate_and_three_kinds_of_patch() {
    let s = Server::start();
    s.kubectl_stdin(&["apply", "-f", "-"], Some(MANIFEST));
    s.kubectl(&["label", "cm", "game-config", "tier=web"]);
    s.kubectl(&["annotate", "cm", "game-config", "note=hello"]);
    let labels = s.kubectl(&["get", "cm", "game-config", "--show-labels"]);
    assert!(labels.contains("app=game,tier=web"), "{labels}");
    let err = s.kubectl_fails(&["label", "cm", "game-config", "tier=db"], None);
    assert!(err.contains("already has a value"), "{err}");
    s.kubectl(&["label", "cm", "game-config", "tier=db", "--overwrite"]);
    s.kubectl(&["label", "cm", "game-config", "tier-"]);
    let labels = s.kubectl(&["get", "cm", "game-config", "-o", "jsonpath={.metadata.labels}"]);
    assert_eq!(labels, r#"{"app":"game"}"#);

    s.kubectl(&["patch", "cm", "game-config", "-p", r#"{"data":{"a":"1"}}"#]);
    s.kubectl(&[
        "patch",
        "cm",
        "game-config",
        "--type=merge",
        "-p",
        r#"{"data":{"b":"2","lives":null}}"#,
    ]);
    s.kubectl(&[
        "patch",
        "cm",
        "game-config",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/data/c","value":"3"}]"#,
    ]);
    let data = s.kubectl(&["get", "cm", "game-config", "-o", "jsonpath={.data}"]);
    assert_eq!(data, r#"{"a":"1","b":"2","c":"3"}"#);

    // A strategic merge patch merges containers by name instead of replacing the list.
    s.kubectl(&[
        "patch",
        "deploy",
        "ml-model-serving",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}"#,
    ]);
    let containers = s.kubectl(&[
        "get",
        "deploy",
        "ml-model-serving",
        "-o",
        "jsonpath={.spec.template.spec.containers[*].name}",
    ]);
    assert_eq!(containers, "ml-rest-server sidecar");
}

#[test]
fn bad_input_gets_upstream_errors() {
    let s = Server::start();
    let bad_name = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n";
    let err = s.kubectl_fails(&["apply", "-f", "-"], Some(bad_name));
    assert!(
        err.contains(
            "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""
        ),
        "{err}"
    );

    let missing_ns = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: nope\n";
    let err = s.kubectl_fails(&["apply", "-f", "-"], Some(missing_ns));
    assert!(err.contains("namespaces \"nope\" not found"), "{err}");

    let negative = MANIFEST.replace("replicas: 10", "replicas: -1");
    let err = s.kubectl_fails(&["apply", "-f", "-"], Some(&negative));
    assert!(
        err.contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
        "{err}"
    );

    let mismatched = MANIFEST.replace(
        "      labels:\n        app: ml-model\n    spec:",
        "      labels:\n        app: other\n    spec:",
    );
    assert_ne!(mismatched, MANIFEST);
    let err = s.kubectl_fails(&["apply", "-f", "-"], Some(&mismatched));
    assert!(err.contains("spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`"), "{err}");
    let no_image = MANIFEST.replace("          image: ml-serving:1.0\n", "");
    let err = s.kubectl_fails(&["apply", "-f", "-"], Some(&no_image));
    assert!(err.contains("spec.template.spec.containers[0].image: Required value"), "{err}");
    // Raw bodies: wrong kind for the URL, malformed JSON, a value of the wrong type.
    let dir = tempfile::tempdir().unwrap();
    let raw = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        s.kubectl_fails(
            &[
                "create",
                "--raw",
                "/api/v1/namespaces/default/configmaps",
                "-f",
                path.to_str().unwrap(),
            ],
            None,
        )
    };
    let err = raw("kind.json", r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"x"}}"#);
    assert!(
        err.contains("BadRequest")
            && err.contains("(Service) does not match the expected kind (ConfigMap)"),
        "{err}"
    );
    let err = raw("broken.json", r#"{"apiVersion":"v1","#);
    assert!(err.contains("BadRequest"), "{err}");
    let err = raw(
        "type.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"q"},"data":{"a":1}}"#,
    );
    assert!(
        err.contains(
            "json: cannot unmarshal number into Go struct field ConfigMap.data.a of type string"
        ),
        "{err}"
    );
    let err = s.kubectl_fails(&["get", "cm", "q"], None);
    assert!(err.contains("not found"), "nothing was stored: {err}");
    let bad_quantity = MANIFEST.replace(
        "          ports:\n",
        "          resources:\n            limits:\n              memory: 1Gx\n          ports:\n",
    );
    assert_ne!(bad_quantity, MANIFEST);
    let err = s.kubectl_fails(&["apply", "-f", "-"], Some(&bad_quantity));
    assert!(err.contains("spec.template.spec.containers[0].resources.limits.memory: Invalid value: \"1Gx\": quantities must match the regular expression"), "{err}");
    let err = s.kubectl_fails(&["get", "deploy", "nothing-here"], None);
    assert!(err.contains("deployments.apps \"nothing-here\" not found"), "{err}");
    let err = s.kubectl_fails(&["get", "pods", "-l", "app in (x"], None);
    assert!(
        err.contains("unable to parse requirement")
            || err.contains("BadRequest")
            || err.contains("parse"),
        "{err}"
    );
}

#[test]
fn openapi_drives_validation_explain_edit_and_replace() {
    let s = Server::start();
    let explain = s.kubectl(&["explain", "deployment.spec.strategy"]);
    assert!(explain.contains("KIND:       Deployment"), "{explain}");
    assert!(
        explain.contains("rollingUpdate") && explain.contains("<RollingUpdateDeployment>"),
        "{explain}"
    );

    let unknown = MANIFEST.replace("  replicas: 10", "  replicas: 10\n  bogus: 1");
    let err = s.kubectl_fails(&["create", "-f", "-"], Some(&unknown));
    assert!(err.contains("strict decoding error: unknown field \"spec.bogus\""), "{err}");
    let err = s.kubectl_fails(&["create", "-f", "-"], Some(MANIFEST));
    assert!(err.contains("configmaps \"game-config\" already exists"), "{err}");
    let created = s.kubectl(&["get", "deploy", "-o", "name"]);
    assert_eq!(
        created.trim(),
        "deployment.apps/ml-model-serving",
        "the valid manifest was created"
    );
    // Applying an unknown field to an existing object fails the same way (patch path).
    let err = s.kubectl_fails(&["apply", "-f", "-"], Some(&unknown));
    assert!(err.contains("strict decoding error: unknown field \"spec.bogus\""), "{err}");

    // edit: EDITOR is a script that changes the value in place.
    let editor = s.data_dir.join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/lives: \"3\"/lives: \"9\"/' \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out =
        s.kubectl_raw_env(&["edit", "cm", "game-config"], &[("EDITOR", editor.to_str().unwrap())]);
    assert!(out.status.success(), "edit failed: {}", String::from_utf8_lossy(&out.stderr));
    let lives = s.kubectl(&["get", "cm", "game-config", "-o", "jsonpath={.data.lives}"]);
    assert_eq!(lives, "9");

    let yaml = s.kubectl(&["get", "cm", "game-config", "-o", "yaml"]).replace("\"9\"", "\"11\"");
    let out = s.kubectl_stdin(&["replace", "-f", "-"], Some(&yaml));
    assert!(out.contains("configmap/game-config replaced"), "{out}");
    let stale = yaml.replace("\"11\"", "\"12\"");
    let err = s.kubectl_fails(&["replace", "-f", "-"], Some(&stale));
    assert!(
        err.contains("the object has been modified"),
        "a stale resourceVersion conflicts: {err}"
    );
}

const SERVICES: &str = "
apiVersion: v1
kind: Service
metadata:
  name: ml-model-svc
  labels:
    app: ml-model
spec:
  type: ClusterIP
  selector:
    app: ml-model
  ports:
    - protocol: TCP
      port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: np
spec:
  type: NodePort
  selector:
    app: x
  ports:
    - port: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: headless
spec:
  clusterIP: None
  ports:
    - port: 80
";

#[test]
fn services_get_cluster_ips_and_node_ports() {
    let s = Server::start();
    s.kubectl_stdin(&["apply", "-f", "-"], Some(SERVICES));
    let get = |name: &str, path: &str| {
        s.kubectl(&["get", "svc", name, "-o", &format!("jsonpath={{{path}}}")])
    };
    assert_eq!(get("kubernetes", ".spec.clusterIP"), "10.43.0.1");
    let ip = get("ml-model-svc", ".spec.clusterIP");
    let np_ip = get("np", ".spec.clusterIP");
    assert!(ip.starts_with("10.43.") && np_ip.starts_with("10.43.") && ip != np_ip, "{ip} {np_ip}");
    assert_eq!(get("ml-model-svc", ".spec.sessionAffinity"), "None");
    assert_eq!(get("ml-model-svc", ".spec.ports[0].targetPort"), "80");
    assert_eq!(get("headless", ".spec.clusterIP"), "None");
    let node_port: u16 = get("np", ".spec.ports[0].nodePort").parse().unwrap();
    assert!((30000..=32767).contains(&node_port));
    let table = s.kubectl(&["get", "svc", "np"]);
    assert!(table.contains(&format!("8080:{node_port}/TCP")), "{table}");
    // Re-applying keeps the addresses.
    let out = s.kubectl_stdin(&["apply", "-f", "-"], Some(SERVICES));
    assert!(out.contains("service/np unchanged"), "{out}");
    assert_eq!(get("np", ".spec.clusterIP"), np_ip);

    // A taken address is refused; deleting its Service frees it.
    let wants = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: NodePort\n  clusterIP: {np_ip}\n  ports:\n  - port: 80\n    nodePort: {node_port}\n"
        )
    };
    let err = s.kubectl_fails(&["apply", "-f", "-"], Some(&wants("again")));
    assert!(err.contains("provided IP is already allocated"), "{err}");
    s.kubectl(&["delete", "svc", "np"]);
    s.kubectl_stdin(&["apply", "-f", "-"], Some(&wants("again")));
    assert_eq!(get("again", ".spec.ports[0].nodePort"), node_port.to_string());
}

#[test]
fn scale_set_image_run_and_expose() {
    let s = Server::start();
    s.kubectl_stdin(&["apply", "-f", "-"], Some(MANIFEST));
    let out = s.kubectl(&["scale", "deploy", "ml-model-serving", "--replicas=4"]);
    assert!(out.contains("deployment.apps/ml-model-serving scaled"), "{out}");
    let scale = s.kubectl(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/ml-model-serving/scale",
    ]);
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 4);
    assert_eq!(scale["status"]["selector"], "app=ml-model");

    s.kubectl(&["set", "image", "deployment/ml-model-serving", "ml-rest-server=ml-serving:2"]);
    let wide = s.kubectl(&["get", "deploy", "ml-model-serving", "-o", "wide"]);
    assert!(
        wide.contains("0/4") && wide.contains("ml-serving:2") && wide.contains("app=ml-model"),
        "{wide}"
    );
    let generation =
        s.kubectl(&["get", "deploy", "ml-model-serving", "-o", "jsonpath={.metadata.generation}"]);
    assert_eq!(generation, "3", "scale and set image each changed the spec");

    let out = s.kubectl(&["run", "pi", "--image=busybox", "--restart=Never"]);
    assert!(out.contains("pod/pi created"), "{out}");
    let pods = s.kubectl(&["get", "pods"]);
    let header: Vec<&str> = pods.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert!(
        pods.lines().any(|l| l.starts_with("pi ") && l.contains("0/1") && l.contains("Pending")),
        "{pods}"
    );

    let all = s.kubectl(&["get", "all"]);
    for name in ["pod/pi", "service/kubernetes", "deployment.apps/ml-model-serving"] {
        assert!(all.contains(name), "`get all` lists {name}: {all}");
    }
    let out = s.kubectl(&[
        "expose",
        "deployment",
        "ml-model-serving",
        "--type=NodePort",
        "--port",
        "8080",
    ]);
    assert!(out.contains("service/ml-model-serving exposed"), "{out}");
    let svc = s.kubectl(&[
        "get",
        "svc",
        "ml-model-serving",
        "-o",
        "jsonpath={.spec.type} {.spec.selector.app} {.spec.ports[0].nodePort}",
    ]);
    let parts: Vec<&str> = svc.split(' ').collect();
    assert_eq!(parts[..2], ["NodePort", "ml-model"], "{svc}");
    assert!(parts[2].parse::<u16>().is_ok_and(|p| p >= 30000), "{svc}");
}

/// kubectl's `create <kind>` subcommands use typed clients, which send protobuf bodies.
#[test]
fn create_subcommands_send_protobuf() {
    let s = Server::start();
    let dir = s.data_dir.join("cm-files");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("one"), "1\n").unwrap();
    std::fs::write(dir.join("two"), "2\n").unwrap();
    let single = s.data_dir.join("game.properties");
    std::fs::write(&single, "lives=3\n").unwrap();

    assert!(s.kubectl(&["create", "namespace", "team-a"]).contains("namespace/team-a created"));
    s.kubectl(&[
        "create",
        "configmap",
        "lit",
        "-n",
        "team-a",
        "--from-literal=a=b",
        "--from-literal=c=d",
    ]);
    assert_eq!(
        s.kubectl(&["get", "cm", "lit", "-n", "team-a", "-o", "jsonpath={.data}"]),
        r#"{"a":"b","c":"d"}"#
    );
    s.kubectl(&[
        "create",
        "configmap",
        "files",
        "--from-file",
        single.to_str().unwrap(),
        "--from-file",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(
        s.kubectl(&["get", "cm", "files", "-o", "jsonpath={.data}"]),
        r#"{"game.properties":"lives=3\n","one":"1\n","two":"2\n"}"#
    );

    s.kubectl(&["create", "secret", "generic", "pw", "--from-literal=password=hunter2"]);
    assert_eq!(
        s.kubectl(&["get", "secret", "pw", "-o", "jsonpath={.data.password}"]),
        "aHVudGVyMg=="
    );
    s.kubectl(&[
        "create",
        "secret",
        "docker-registry",
        "reg",
        "--docker-server=registry.test",
        "--docker-username=u",
        "--docker-password=p",
    ]);
    assert_eq!(
        s.kubectl(&["get", "secret", "reg", "-o", "jsonpath={.type}"]),
        "kubernetes.io/dockerconfigjson"
    );

    s.kubectl(&["create", "deployment", "web", "--image=nginx", "--replicas=2", "--port=80"]);
    let deploy = s.kubectl(&["get", "deploy", "web", "-o", "json"]);
    let deploy: serde_json::Value = serde_json::from_str(&deploy).unwrap();
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(deploy["spec"]["selector"]["matchLabels"]["app"], "web");
    let container = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx");
    assert_eq!(container["ports"][0]["containerPort"], 80);
    assert!(container.get("stdin").is_none(), "Go zero values are not stored: {container}");
    s.kubectl(&["create", "deployment", "none", "--image=nginx", "--replicas=0"]);
    assert_eq!(
        s.kubectl(&["get", "deploy", "none", "-o", "jsonpath={.spec.replicas}"]),
        "0",
        "an explicit 0 is kept"
    );

    s.kubectl(&["create", "job", "pi", "--image=busybox", "--", "sh", "-c", "echo 3.14"]);
    assert_eq!(
        s.kubectl(&[
            "get",
            "job",
            "pi",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].command}"
        ]),
        r#"["sh","-c","echo 3.14"]"#
    );
    s.kubectl(&[
        "create",
        "cronjob",
        "tick",
        "--image=busybox",
        "--schedule=*/1 * * * *",
        "--",
        "date",
    ]);
    assert_eq!(
        s.kubectl(&["get", "cronjob", "tick", "-o", "jsonpath={.spec.schedule}"]),
        "*/1 * * * *"
    );
    let jobs = s.kubectl(&["get", "jobs"]);
    let header: Vec<&str> = jobs.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]);
    assert!(
        jobs.lines().any(|l| l.starts_with("pi ") && l.contains("Running") && l.contains("0/1")),
        "{jobs}"
    );
    let cronjobs = s.kubectl(&["get", "cronjobs"]);
    let header: Vec<&str> = cronjobs.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    );
    s.kubectl(&["create", "service", "clusterip", "cip", "--tcp=80:8080"]);
    s.kubectl(&["create", "service", "nodeport", "np", "--tcp=80:8080"]);
    let np: u16 = s
        .kubectl(&["get", "svc", "np", "-o", "jsonpath={.spec.ports[0].nodePort}"])
        .parse()
        .unwrap();
    assert!((30000..=32767).contains(&np), "a nodePort of 0 from a Go client means allocate one");
    let tls = s.data_dir.join("tls");
    s.kubectl(&[
        "create",
        "secret",
        "tls",
        "web-tls",
        "--cert",
        tls.join("serving.crt").to_str().unwrap(),
        "--key",
        tls.join("serving.key").to_str().unwrap(),
    ]);
    assert_eq!(
        s.kubectl(&["get", "secret", "web-tls", "-o", "jsonpath={.type}"]),
        "kubernetes.io/tls"
    );
    s.kubectl(&["create", "role", "reader", "--verb=get", "--resource=pods"]);
    s.kubectl(&[
        "create",
        "rolebinding",
        "rb",
        "--role=reader",
        "--user=alice",
        "--serviceaccount=default:sa1",
    ]);
    s.kubectl(&["create", "quota", "q", "--hard=cpu=1,limits.memory=1Gi"]);
    s.kubectl(&["create", "pdb", "keep", "--selector=app=x", "--min-available=1"]);
    let rb = s.kubectl(&["get", "rolebinding", "rb", "-o", "wide"]);
    let header: Vec<&str> = rb.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]);
    assert!(
        rb.contains("Role/reader") && rb.contains("alice") && rb.contains("default/sa1"),
        "{rb}"
    );
    let quota = s.kubectl(&["get", "quota", "q"]);
    assert!(quota.contains("cpu: 0/1") && quota.contains("limits.memory: 0/1Gi"), "{quota}");
    let pdb = s.kubectl(&["get", "pdb", "keep"]);
    assert!(
        pdb.lines()
            .next()
            .unwrap()
            .contains("MIN AVAILABLE   MAX UNAVAILABLE   ALLOWED DISRUPTIONS"),
        "{pdb}"
    );
    let err = s.kubectl_fails(&["create", "namespace", "team-a"], None);
    assert!(err.contains("namespaces \"team-a\" already exists"), "{err}");
}

#[test]
fn namespaces_selectors_dry_run_and_limits() {
    // The API alone (no namespace controller), so a Terminating namespace stays and its
    // API-side rules can be seen; `namespace_deletion_empties_and_removes_it` has the controller.
    let s = Server::start_args(&["--disable-controller-manager"]);
    s.kubectl(&["create", "namespace", "doomed"]);
    s.kubectl(&["create", "configmap", "inside", "-n", "doomed", "--from-literal=a=b"]);
    s.kubectl(&["delete", "namespace", "doomed", "--wait=false"]);
    let phase = s.kubectl(&["get", "ns", "doomed", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Terminating");
    // Changing a Terminating namespace does not finish its deletion (its spec.finalizers stay).
    s.kubectl(&["label", "ns", "doomed", "touched=yes"]);
    let phase =
        s.kubectl(&["get", "ns", "doomed", "-o", "jsonpath={.status.phase} {.spec.finalizers}"]);
    assert_eq!(phase, r#"Terminating ["kubernetes"]"#);
    let err = s.kubectl_fails(
        &["create", "configmap", "late", "-n", "doomed", "--from-literal=a=b"],
        None,
    );
    assert!(
        err.contains(
            "unable to create new content in namespace doomed because it is being terminated"
        ),
        "{err}"
    );

    for (name, tier) in [("a", "web"), ("b", "web"), ("c", "db")] {
        s.kubectl(&["create", "configmap", name, "--from-literal=k=v"]);
        s.kubectl(&["label", "cm", name, &format!("tier={tier}")]);
    }
    let web = s.kubectl(&["get", "cm", "-l", "tier=web", "-o", "name"]);
    assert_eq!(web.lines().collect::<Vec<_>>(), ["configmap/a", "configmap/b"]);
    let set = s.kubectl(&["get", "cm", "-l", "tier in (db),tier notin (web)", "-o", "name"]);
    assert_eq!(set.trim(), "configmap/c");
    let by_name = s.kubectl(&["get", "cm", "--field-selector", "metadata.name=b", "-o", "name"]);
    assert_eq!(by_name.trim(), "configmap/b");
    let everywhere = s.kubectl(&[
        "get",
        "cm",
        "-A",
        "--field-selector",
        "metadata.namespace=doomed",
        "-o",
        "name",
    ]);
    assert_eq!(everywhere.trim(), "configmap/inside");
    let page = s.kubectl(&["get", "cm", "--chunk-size=1", "-o", "name"]);
    assert_eq!(page.lines().count(), 3, "paging through the list finds everything: {page}");

    let dry = s.kubectl(&[
        "create",
        "configmap",
        "ghost",
        "--from-literal=a=b",
        "--dry-run=server",
        "-o",
        "name",
    ]);
    assert_eq!(dry.trim(), "configmap/ghost");
    let err = s.kubectl_fails(&["get", "cm", "ghost"], None);
    assert!(err.contains("not found"), "a server dry run stores nothing: {err}");

    s.kubectl(&["delete", "cm", "-l", "tier=web"]);
    assert_eq!(s.kubectl(&["get", "cm", "-o", "name"]).trim(), "configmap/c");
    s.kubectl(&["delete", "cm", "--all"]);
    assert_eq!(s.kubectl(&["get", "cm", "-o", "name"]).trim(), "");

    // A body over 3 MiB is refused before it is parsed.
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  k: \"{}\"\n",
        "x".repeat(3 * 1024 * 1024 + 10)
    );
    let err = s.kubectl_fails(&["create", "-f", "-"], Some(&big));
    assert!(err.contains("Request entity too large"), "{}", &err[..err.len().min(300)]);
}

#[test]
fn pod_binding_and_eviction() {
    // The test binds by hand: no scheduler.
    let s = Server::start_args(&["--disable-scheduler"]);
    let dir = tempfile::tempdir().unwrap();
    let post = |path: &str, body: &str| {
        let file = dir.path().join("body.json");
        std::fs::write(&file, body).unwrap();
        s.kubectl_raw(&["create", "--raw", path, "-f", file.to_str().unwrap()], None)
    };
    s.kubectl(&["run", "a", "--image=busybox", "--labels=app=a"]);
    let binding = r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"a"},"target":{"apiVersion":"v1","kind":"Node","name":"node-1"}}"#;
    let out = post("/api/v1/namespaces/default/pods/a/binding", binding);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bound = s.kubectl(&[
        "get",
        "pod",
        "a",
        "-o",
        "jsonpath={.spec.nodeName} {.status.conditions[0].type}={.status.conditions[0].status}",
    ]);
    assert_eq!(bound, "node-1 PodScheduled=True");
    let again =
        post("/api/v1/namespaces/default/pods/a/binding", &binding.replace("node-1", "node-2"));
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is already assigned to node \"node-1\"")
    );

    // A PodDisruptionBudget that allows no disruption blocks the eviction (429).
    let pdb = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: keep-a\nspec:\n  minAvailable: 1\n  selector:\n    matchLabels:\n      app: a\n";
    s.kubectl_stdin(&["apply", "-f", "-"], Some(pdb));
    let eviction = r#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"a","namespace":"default"}}"#;
    let blocked = post("/api/v1/namespaces/default/pods/a/eviction", eviction);
    assert!(!blocked.status.success());
    assert!(
        String::from_utf8_lossy(&blocked.stderr).contains("disruption budget"),
        "{}",
        String::from_utf8_lossy(&blocked.stderr)
    );
    s.kubectl(&["delete", "pdb", "keep-a"]);
    let evicted = post("/api/v1/namespaces/default/pods/a/eviction", eviction);
    assert!(evicted.status.success(), "{}", String::from_utf8_lossy(&evicted.stderr));
    // node-1 has no kubelet to finish the graceful deletion: the pod stays Terminating, as
    // upstream; a force delete removes it.
    let ts = s.kubectl(&["get", "pod", "a", "-o", "jsonpath={.metadata.deletionTimestamp}"]);
    assert!(!ts.is_empty(), "evicted pod has a deletionTimestamp");
    s.kubectl(&["delete", "pod", "a", "--grace-period=0", "--force"]);
    let err = s.kubectl_fails(&["get", "pod", "a"], None);
    assert!(err.contains("pods \"a\" not found"), "{err}");
}

#[test]
fn get_watch_sees_create_update_and_delete() {
    let s = Server::start();
    let mut watch = common::KillOnDrop(
        Command::new(KUBECTL)
            .args(["get", "cm", "-w", "--output-watch-events", "--request-timeout=60s"])
            .env("KUBECONFIG", s.kubeconfig())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = watch.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\ndata:\n  k: v\n";
    let mut seen = Vec::new();
    let expect = |what: &str, seen: &mut Vec<String>| loop {
        let line =
            rx.recv_timeout(DEADLINE).unwrap_or_else(|_| panic!("no {what} event; saw {seen:?}"));
        seen.push(line.clone());
        if line.starts_with(what) && line.contains("watched") {
            break;
        }
    };
    // Created before or after the watch is established, the object arrives as ADDED: from
    // the initial list or from the watch.
    s.kubectl_stdin(&["apply", "-f", "-"], Some(cm));
    expect("ADDED", &mut seen);
    s.kubectl(&["label", "cm", "watched", "x=y"]);
    expect("MODIFIED", &mut seen);
    s.kubectl(&["delete", "cm", "watched"]);
    expect("DELETED", &mut seen);
    drop(watch);
}

#[test]
fn acknowledged_write_survives_kill_9() {
    let s = Server::start();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: durable\ndata:\n  k: v\n";
    s.kubectl_stdin(&["apply", "-f", "-"], Some(cm));
    let rv = s.kubectl(&["get", "cm", "durable", "-o", "jsonpath={.metadata.resourceVersion}"]);
    let data_dir = s.data_dir.clone();
    let dir = {
        let mut s = s;
        // SIGKILL right after kubectl reported success: no shutdown path runs.
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        s._dir.take()
    };
    let restarted = Server::start_in(&data_dir);
    let after =
        restarted.kubectl(&["get", "cm", "durable", "-o", "jsonpath={.metadata.resourceVersion}"]);
    assert_eq!(after, rv, "same object, same resourceVersion after kill -9");
    drop(restarted);
    drop(dir);
}

#[test]
fn namespace_deletion_empties_and_removes_it() {
    let s = Server::start();
    s.kubectl(&["create", "namespace", "doomed"]);
    s.kubectl(&["create", "configmap", "inside", "-n", "doomed", "--from-literal=a=b"]);
    s.kubectl(&["create", "deployment", "web", "-n", "doomed", "--image=busybox"]);
    // kubectl waits for the namespace to be gone.
    s.kubectl(&["delete", "namespace", "doomed", "--timeout=60s"]);
    let err = s.kubectl_fails(&["get", "namespace", "doomed"], None);
    assert!(err.contains("NotFound") || err.contains("not found"), "{err}");
    s.kubectl(&["create", "namespace", "doomed"]);
    let left = s.kubectl(&["get", "all,cm", "-n", "doomed", "-o", "name"]);
    assert_eq!(left.trim(), "", "the recreated namespace starts empty");
}
